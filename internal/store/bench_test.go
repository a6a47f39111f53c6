package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/ztgate/ztgate/internal/audit"
	"github.com/ztgate/ztgate/internal/store/pgtest"
)

// BenchmarkAuditPipeline is the audit writer at full speed: producers (64
// per core) each wait for their event to be durable, as requests do. In
// the journal cases (audit.commit: journal, the default) each producer
// appends to the journal and the shipper moves it into the store; the
// clock stops only once the store holds every event. In the others
// (commit: store) the pipeline group-commits into the store. It reports
// events/s and checks afterwards that every event is in the store (zero
// loss).
func BenchmarkAuditPipeline(b *testing.B) {
	openSQLite := func(b *testing.B) *DB {
		s, err := OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "a.db"))
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	openPostgres := func(b *testing.B) *DB {
		srv := pgtest.Start(b) // stopped at the end of the sub-benchmark's run
		s, err := OpenPostgres(context.Background(), srv.NewDatabase())
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		name    string
		journal bool
		open    func(*testing.B) *DB
	}{
		{"journal-sqlite", true, openSQLite},
		{"journal-postgres", true, openPostgres},
		{"sqlite", false, openSQLite},
		{"postgres", false, openPostgres},
	} {
		b.Run(tc.name, func(b *testing.B) { benchPipelineMode(b, tc.journal, tc.open) })
	}
}

// BenchmarkAuditAppend is one batch of n records written by the store,
// without the pipeline: the cost of a commit and of a row.
func BenchmarkAuditAppend(b *testing.B) {
	for _, n := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("sqlite/batch=%d", n), func(b *testing.B) {
			s, err := OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "a.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			chain := audit.NewChain(nil)
			ev := benchEvent()
			body, _ := audit.Canonical(&ev)
			recs := make([]audit.Record, n)
			seq, prev := int64(0), ""
			b.ResetTimer()
			for range b.N {
				for i := range recs {
					seq++
					h := chain.Link("bench", seq, prev, body)
					recs[i] = audit.Record{Node: "bench", Seq: seq, Event: ev, Body: string(body), PrevHash: prev, Hash: h}
					prev = h
				}
				if err := s.Append(context.Background(), recs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

func benchEvent() audit.Event {
	return audit.Event{
		Time: time.Now().UTC(), EventType: "ApiRequest", RequestID: "0123456789abcdef", Result: "Success",
		Decision: "allow", Reasons: []string{"roles_ok", "when_ok"}, PolicyVersion: "3f2a9c41d0b7e6a5",
		Service: "orders", Route: "read-orders", IdentityType: "user", Tenant: "72f988bf-86f1-41af-91ab-2d7cd011db47",
		ObjectID: "1c2d3e4f-0000-4000-8000-000000000001", Subject: "alice", AppID: "6f1d4c9e-0000-0000-0000-000000000000",
		Identity: "72f988bf-86f1-41af-91ab-2d7cd011db47/1c2d3e4f-0000-4000-8000-000000000001", SrcIP: "10.1.2.3",
		UserAgent: "partner-client/2.1", Method: "GET", URL: "/orders/42?expand=REDACTED", Status: 200, DurationMS: 0.42,
	}
}

func benchPipelineMode(b *testing.B, journal bool, open func(b *testing.B) *DB) {
	s := open(b)
	defer s.Close()
	ctx := context.Background()
	p, err := audit.NewPipeline(ctx, s, audit.NewChain([]byte("bench-key")), "bench", 4096, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	if journal {
		j, err := audit.OpenJournal(b.TempDir(), 8<<30, false)
		if err != nil {
			b.Fatal(err)
		}
		defer j.Close()
		if err := p.UseJournal(j, true); err != nil {
			b.Fatal(err)
		}
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { p.Run(rctx); close(done) }()
	ev := benchEvent()
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := p.Record(ctx, ev, 10*time.Second); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if journal {
		if err := p.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	stop()
	<-done
	last, _, err := s.Last(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	var rows int64
	if err := s.queryRow(ctx, `SELECT COUNT(*) FROM audit_events WHERE node = ?`, "bench").Scan(&rows); err != nil {
		b.Fatal(err)
	}
	if rows != last || rows < int64(b.N) {
		b.Fatalf("lost events: %d acknowledged, %d rows, last sequence %d", b.N, rows, last)
	}
}
