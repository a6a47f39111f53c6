package node

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/ztgate/ztgate/internal/audit"
	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/store"
)

// TestReplayLeftSpool: a spool left by a run under commit: store (the
// store was down, on_failure: buffer) is written into the store before the
// journal starts, so upgrading to the journal loses none of it, and the
// chain goes on after it.
func TestReplayLeftSpool(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := &config.Config{File: filepath.Join(dir, "ztgate.yaml"), Store: &config.Store{Driver: "sqlite", DSN: "audit.db"}}
	cfg.Audit.SpoolMaxBytes = 1 << 20
	cfg.Audit.JournalMaxBytes = 1 << 20
	cfg.Audit.Node = "gw"

	// The earlier run: two events in the store, three spooled.
	sp, err := audit.OpenSpool(spoolDir(cfg), cfg.Audit.SpoolMaxBytes)
	if err != nil {
		t.Fatal(err)
	}
	chain := audit.NewChain(nil)
	var recs []audit.Record
	prev := ""
	for seq := int64(1); seq <= 5; seq++ {
		ev := audit.Event{Time: time.Unix(seq, 0).UTC(), RequestID: fmt.Sprint("r", seq), Decision: "allow", Node: "gw"}
		body, _ := audit.Canonical(&ev)
		h := chain.Link("gw", seq, prev, body)
		recs = append(recs, audit.Record{Node: "gw", Seq: seq, Event: ev, Body: string(body), PrevHash: prev, Hash: h})
		prev = h
	}
	if err := st.Append(context.Background(), recs[:2]); err != nil {
		t.Fatal(err)
	}
	if err := sp.Append(recs[2:]); err != nil {
		t.Fatal(err)
	}
	sp.Close()

	logger := slog.New(slog.DiscardHandler)
	p, stop, err := startAudit(context.Background(), cfg, st, logger, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Record(context.Background(), audit.Event{Time: time.Unix(6, 0).UTC(), RequestID: "r6", Decision: "allow"}, time.Second); err != nil {
		t.Fatal(err)
	}
	stop()
	got, err := st.Chain(context.Background(), "gw")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 6 || got[5].Event.RequestID != "r6" {
		t.Fatalf("the store holds %d events, want the 2 stored, the 3 spooled and the new one", len(got))
	}
	if pr := chain.Verify(got); pr != nil {
		t.Fatalf("chain: %+v", pr)
	}
	sp, err = audit.OpenSpool(spoolDir(cfg), cfg.Audit.SpoolMaxBytes)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if sp.Len() != 0 {
		t.Fatalf("the spool still holds %d events", sp.Len())
	}
}
