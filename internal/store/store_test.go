package store

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ztgate/ztgate/internal/alert"
	"github.com/ztgate/ztgate/internal/audit"
	"github.com/ztgate/ztgate/internal/limits"
	"github.com/ztgate/ztgate/internal/store/pgtest"
)

// eachStore runs f against SQLite and against a real PostgreSQL server.
// f gets an opener: each call opens the same (new, empty at first) database
// again, as a restarted gateway would.
func eachStore(t *testing.T, f func(t *testing.T, open func() *DB)) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "a.db")
		f(t, func() *DB {
			t.Helper()
			s, err := OpenSQLite(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		})
	})
	t.Run("postgres", func(t *testing.T) {
		srv := pgtest.Start(t)
		dsn := srv.NewDatabase()
		f(t, func() *DB {
			t.Helper()
			s, err := OpenPostgres(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		})
	})
}

// eachFresh runs f once per store kind, with a fresh database per call of
// fresh (a server is shared within the kind).
func eachFresh(t *testing.T, f func(t *testing.T, fresh func(t *testing.T) *DB)) {
	t.Run("sqlite", func(t *testing.T) {
		f(t, func(t *testing.T) *DB {
			s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "a.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		})
	})
	t.Run("postgres", func(t *testing.T) {
		srv := pgtest.Start(t)
		f(t, func(t *testing.T) *DB {
			s, err := OpenPostgres(context.Background(), srv.NewDatabase())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		})
	})
}

func fill(t *testing.T, s *DB, n int) {
	t.Helper()
	ctx := context.Background()
	p, err := audit.NewPipeline(ctx, s, audit.NewChain([]byte("k")), "node-a", 64, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go p.Run(runCtx)
	for i := range n {
		ev := audit.Event{Time: time.Unix(int64(1000+i), 0), RequestID: fmt.Sprint("r", i), Decision: []string{"allow", "deny"}[i%2], Service: "s", Route: "r", Identity: "t/alice", Status: 200}
		if err := p.Record(ctx, ev, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	ctx := context.Background()
	chain := audit.NewChain([]byte("k"))
	tests := []struct {
		name   string
		tamper string
		want   string
		seq    int64
	}{
		{"intact", "", "", 0},
		{"edited row", `UPDATE audit_events SET body = replace(body, '"decision":"deny"', '"decision":"allow"') WHERE seq = 4`, "altered or moved", 4},
		{"deleted row", `DELETE FROM audit_events WHERE seq = 3`, "deleted", 3},
		{"deleted last rows is not detectable by the chain alone but the head moves", `DELETE FROM audit_events WHERE seq = 6`, "", 0},
		{"edited index column only", `UPDATE audit_events SET decision = 'allow' WHERE seq = 2`, "altered: the indexed columns", 2},
		{"swapped pair", `UPDATE audit_events SET seq = -2 WHERE seq = 2; UPDATE audit_events SET seq = 2 WHERE seq = 5; UPDATE audit_events SET seq = 5 WHERE seq = -2`, "altered or moved", 2},
		{"re-hashed without the key", `UPDATE audit_events SET body = replace(body, '"status":200', '"status":201'), hash = 'x' WHERE seq = 1`, "altered or moved", 1},
	}
	eachFresh(t, func(t *testing.T, fresh func(t *testing.T) *DB) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := fresh(t)
				fill(t, s, 6)
				if tt.tamper != "" {
					if err := s.Exec(ctx, tt.tamper); err != nil {
						t.Fatal(err)
					}
				}
				recs, err := s.Chain(ctx, "node-a")
				if err != nil {
					t.Fatal(err)
				}
				p := chain.Verify(recs)
				switch {
				case tt.want == "" && p != nil:
					t.Fatalf("got %+v, want a clean chain", p)
				case tt.want != "" && (p == nil || !strings.HasPrefix(p.What, tt.want) || p.Seq != tt.seq):
					t.Fatalf("got %+v, want %s at %d", p, tt.want, tt.seq)
				}
			})
		}
	})
}

func TestChainContinuesAcrossRestarts(t *testing.T) {
	eachStore(t, testChainContinuesAcrossRestarts)
}

func testChainContinuesAcrossRestarts(t *testing.T, open func() *DB) {
	ctx := context.Background()
	s := open()
	fill(t, s, 3)
	s.Close()
	s = open()
	fill(t, s, 3)
	recs, _ := s.Chain(ctx, "node-a")
	if len(recs) != 6 {
		t.Fatalf("got %d records, want 6", len(recs))
	}
	if p := audit.NewChain([]byte("k")).Verify(recs); p != nil {
		t.Fatalf("chain broken across a restart: %+v", p)
	}
	// A different key does not verify.
	if p := audit.NewChain([]byte("other")).Verify(recs); p == nil {
		t.Fatal("verified with the wrong key")
	}
}

func TestQuery(t *testing.T) { eachStore(t, testQuery) }

func testQuery(t *testing.T, open func() *DB) {
	ctx := context.Background()
	s := open()
	fill(t, s, 25)
	recs, next, err := s.Query(ctx, Filter{Decision: "deny", Limit: 5})
	if err != nil || len(recs) != 5 || next == "" {
		t.Fatalf("page 1: %d records, next %q, %v", len(recs), next, err)
	}
	seen := map[int64]bool{}
	pages := 1
	for next != "" {
		for _, r := range recs {
			if seen[r.Seq] || !strings.Contains(string(r.Body), `"decision":"deny"`) {
				t.Fatalf("bad record %d %s", r.Seq, r.Body)
			}
			seen[r.Seq] = true
		}
		recs, next, err = s.Query(ctx, Filter{Decision: "deny", Limit: 5, After: next})
		if err != nil {
			t.Fatal(err)
		}
		pages++
	}
	for _, r := range recs {
		seen[r.Seq] = true
	}
	if len(seen) != 12 || pages != 3 {
		t.Fatalf("got %d deny events over %d pages, want 12 over 3", len(seen), pages)
	}
	recs, _, _ = s.Query(ctx, Filter{Route: "s/r", Since: time.Unix(1020, 0)})
	if len(recs) != 5 {
		t.Fatalf("since filter: got %d, want 5", len(recs))
	}
}

func TestQuotasPersist(t *testing.T) { eachStore(t, testQuotasPersist) }

func testQuotasPersist(t *testing.T, open func() *DB) {
	ctx := context.Background()
	q := limits.Quota{Calls: 2, Bytes: 100, Period: limits.Day}
	s := open()
	if res, err := s.Quotas().Admit(ctx, "k", q); err != nil || !res.Allowed || res.Remaining != 1 {
		t.Fatalf("first call: %+v %v", res, err)
	}
	s.Close()
	s = open()
	if res, _ := s.Quotas().Admit(ctx, "k", q); !res.Allowed || res.Remaining != 0 {
		t.Fatalf("second call after a restart: %+v", res)
	}
	if res, _ := s.Quotas().Admit(ctx, "k", q); res.Allowed {
		t.Fatalf("third call: %+v, want refused", res)
	}
	s.Quotas().AddBytes(ctx, "b", q, 150)
	if res, _ := s.Quotas().Admit(ctx, "b", q); res.Allowed {
		t.Fatal("bytes spent: call allowed")
	}
}

func TestMigrationsInStep(t *testing.T) {
	if len(migrations[SQLite]) != len(migrations[Postgres]) {
		t.Fatalf("SQLite has %d migrations, PostgreSQL %d: step i must mean the same in both", len(migrations[SQLite]), len(migrations[Postgres]))
	}
}

func TestAlerts(t *testing.T) { eachStore(t, testAlerts) }

func testAlerts(t *testing.T, open func() *DB) {
	ctx := context.Background()
	s := open()
	for i := range 3 {
		if err := s.AddAlert(ctx, alert.Alert{Time: time.Unix(int64(100+i), 0), Severity: "high", Rule: "r", Summary: fmt.Sprint("s", i), Identity: "id", Evidence: []string{"a", "b"}, Node: "n"}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Alerts(ctx, time.Unix(101, 0), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Summary != "s2" || len(got[0].Evidence) != 2 || got[0].ID == 0 {
		t.Fatalf("got %+v", got)
	}
}

// TestPostgresSharedByNodes: two gateways migrating and appending to one
// PostgreSQL database at once keep separate, verifiable chains.
func TestPostgresSharedByNodes(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, node := range []string{"n1", "n2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := OpenPostgres(ctx, dsn)
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			p, err := audit.NewPipeline(ctx, s, audit.NewChain(nil), node, 64, slog.New(slog.DiscardHandler))
			if err != nil {
				errs <- err
				return
			}
			rctx, stop := context.WithCancel(ctx)
			defer stop()
			go p.Run(rctx)
			for i := range 200 {
				if err := p.Record(ctx, audit.Event{Time: time.Now(), RequestID: fmt.Sprint(node, i), Decision: "allow"}, 5*time.Second); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s, err := OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nodes, _ := s.Nodes(ctx)
	if len(nodes) != 2 {
		t.Fatalf("nodes %v", nodes)
	}
	for _, n := range nodes {
		recs, _ := s.Chain(ctx, n)
		if len(recs) != 200 {
			t.Fatalf("%s: %d records", n, len(recs))
		}
		if p := audit.NewChain(nil).Verify(recs); p != nil {
			t.Fatalf("%s: %+v", n, p)
		}
	}
}

// TestRetention: pruning removes old events, keeps the chain verifiable
// from a keyed checkpoint, and a moved checkpoint or a deletion after it is
// still found.
func TestRetention(t *testing.T) { eachStore(t, testRetention) }

func testRetention(t *testing.T, open func() *DB) {
	ctx := context.Background()
	s := open()
	fill(t, s, 10) // events at unix 1000..1009
	chain := audit.NewChain([]byte("k"))
	n, err := s.Prune(ctx, time.Unix(1004, 0), chain.CheckpointMAC)
	if err != nil || n != 4 {
		t.Fatalf("pruned %d, %v; want 4", n, err)
	}
	ck, err := s.Checkpoint(ctx, "node-a")
	if err != nil || ck == nil || ck.Seq != 4 {
		t.Fatalf("checkpoint %+v %v", ck, err)
	}
	recs, _ := s.Chain(ctx, "node-a")
	if len(recs) != 6 || recs[0].Seq != 5 {
		t.Fatalf("%d records left, first %d", len(recs), recs[0].Seq)
	}
	if p := chain.VerifyFrom(ck.Seq, ck.Hash, recs); p != nil {
		t.Fatalf("chain after pruning: %+v", p)
	}
	if chain.CheckpointMAC("node-a", ck.Seq, ck.Hash) != ck.MAC {
		t.Fatal("checkpoint MAC does not verify")
	}
	if audit.NewChain([]byte("other")).CheckpointMAC("node-a", ck.Seq, ck.Hash) == ck.MAC {
		t.Fatal("checkpoint MAC verifies with the wrong key")
	}
	// Without the checkpoint, the pruned chain reads as deleted records.
	if p := chain.Verify(recs); p == nil {
		t.Fatal("a pruned chain verified from the start")
	}
	// The newest record always stays, even when everything is old.
	n, _ = s.Prune(ctx, time.Unix(5000, 0), chain.CheckpointMAC)
	recs, _ = s.Chain(ctx, "node-a")
	ck, _ = s.Checkpoint(ctx, "node-a")
	if n != 5 || len(recs) != 1 || recs[0].Seq != 10 || ck.Seq != 9 {
		t.Fatalf("pruned %d, %d left, checkpoint %d", n, len(recs), ck.Seq)
	}
	if p := chain.VerifyFrom(ck.Seq, ck.Hash, recs); p != nil {
		t.Fatalf("chain after pruning everything old: %+v", p)
	}
	// The chain continues after a restart.
	s.Close()
	s = open()
	fill(t, s, 2)
	recs, _ = s.Chain(ctx, "node-a")
	if p := chain.VerifyFrom(ck.Seq, ck.Hash, recs); p != nil || len(recs) != 3 {
		t.Fatalf("continued chain: %d records, %+v", len(recs), p)
	}
	// Deleting a record after the checkpoint is found.
	if err := s.Exec(ctx, `DELETE FROM audit_events WHERE seq = 11`); err != nil {
		t.Fatal(err)
	}
	recs, _ = s.Chain(ctx, "node-a")
	if p := chain.VerifyFrom(ck.Seq, ck.Hash, recs); p == nil {
		t.Fatal("a deletion after the checkpoint went unnoticed")
	}
}

// TestAppendBatchSizes: batches of every size from 1 to past two chunks
// land whole and in order; in SQLite through the seven prepared INSERTs
// only.
func TestAppendBatchSizes(t *testing.T) { eachStore(t, testAppendBatchSizes) }

func testAppendBatchSizes(t *testing.T, open func() *DB) {
	ctx := context.Background()
	s := open()
	chain := audit.NewChain([]byte("k"))
	seq, prev := int64(0), ""
	for n := 1; n <= 2*insertChunk+3; n++ {
		recs := make([]audit.Record, n)
		for i := range recs {
			seq++
			ev := audit.Event{Time: time.Unix(1000+seq, 0), RequestID: fmt.Sprint("r", seq), Decision: "allow", Status: 200}
			body, err := audit.Canonical(&ev)
			if err != nil {
				t.Fatal(err)
			}
			h := chain.Link("node-a", seq, prev, body)
			recs[i] = audit.Record{Node: "node-a", Seq: seq, Event: ev, Body: string(body), PrevHash: prev, Hash: h}
			prev = h
		}
		if err := s.Append(ctx, recs); err != nil {
			t.Fatalf("batch of %d: %v", n, err)
		}
	}
	got, err := s.Chain(ctx, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(got)) != seq {
		t.Fatalf("store holds %d records, want %d", len(got), seq)
	}
	if p := chain.Verify(got); p != nil {
		t.Fatalf("chain broken: %+v", p)
	}
	if s.dialect != SQLite {
		return
	}
	s.insMu.Lock()
	defer s.insMu.Unlock()
	for n := range s.ins {
		if n&(n-1) != 0 || n > insertChunk {
			t.Errorf("prepared an INSERT of %d records; only powers of two up to %d are expected", n, insertChunk)
		}
	}
}
