package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ztgate/ztgate/internal/apikey"
)

func newKey(t *testing.T, name string, now time.Time) (string, apikey.Key) {
	t.Helper()
	raw, k := apikey.New(apikey.Request{Name: name, Service: "orders", Roles: []string{"Orders.Read"}, Scopes: []string{"orders.read"}, TTL: 90 * 24 * time.Hour}, now, "test")
	return raw, k
}

func TestAPIKeys(t *testing.T) { eachStore(t, testAPIKeys) }

func testAPIKeys(t *testing.T, open func() *DB) {
	ctx := context.Background()
	s := open()
	now := time.Now().UTC().Truncate(time.Millisecond)
	v0, err := s.APIKeyVersion(ctx)
	if err != nil || v0 != 0 {
		t.Fatalf("version of an empty store: got %d, %v; want 0", v0, err)
	}
	raw, k := newKey(t, "partner-a", now)
	k, err = s.CreateAPIKey(ctx, k)
	if err != nil || k.Rev != 1 {
		t.Fatalf("create: rev %d, %v; want 1", k.Rev, err)
	}
	_, k2 := newKey(t, "partner-b", now.Add(time.Second))
	if k2, err = s.CreateAPIKey(ctx, k2); err != nil || k2.Rev != 2 {
		t.Fatalf("create second: rev %d, %v; want 2", k2.Rev, err)
	}

	got, err := s.APIKey(ctx, k.ID)
	if err != nil || got == nil {
		t.Fatalf("get: %v, %v", got, err)
	}
	if d := cmp.Diff(k, *got); d != "" {
		t.Fatalf("stored key differs (-want +got):\n%s", d)
	}
	if !apikey.Verify(raw, got.Hash) {
		t.Fatal("the stored hash does not verify the key")
	}
	if missing, err := s.APIKey(ctx, "0000000000000000"); missing != nil || err != nil {
		t.Fatalf("unknown id: got %v, %v; want nil, nil", missing, err)
	}

	list, err := s.APIKeys(ctx)
	if err != nil || len(list) != 2 || list[0].ID != k2.ID || list[1].ID != k.ID {
		t.Fatalf("list: got %v, %v; want partner-b then partner-a", list, err)
	}

	// Use is recorded without a change version; a time never moves back.
	used := now.Add(time.Minute)
	if err := s.TouchAPIKeys(ctx, map[string]time.Time{k.ID: used, "0000000000000000": used}); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchAPIKeys(ctx, map[string]time.Time{k.ID: now}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.APIKey(ctx, k.ID)
	if !got.LastUsed.Equal(used) || got.Rev != 1 {
		t.Fatalf("after touch: last used %v rev %d; want %v and rev 1", got.LastUsed, got.Rev, used)
	}

	// Revocation is a change; revoking again changes nothing.
	at := now.Add(2 * time.Minute)
	rk, changed, err := s.RevokeAPIKey(ctx, k.ID, at)
	if err != nil || !changed || rk.Rev != 3 || !rk.RevokedAt.Equal(at) {
		t.Fatalf("revoke: %+v changed=%v %v", rk, changed, err)
	}
	if _, changed, err := s.RevokeAPIKey(ctx, k.ID, at.Add(time.Hour)); err != nil || changed {
		t.Fatalf("revoke again: changed=%v %v; want no change", changed, err)
	}
	if _, _, err := s.RevokeAPIKey(ctx, "0000000000000000", at); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke unknown: got %v, want ErrNotFound", err)
	}
	if v, _ := s.APIKeyVersion(ctx); v != 3 {
		t.Fatalf("version after create, create, revoke: got %d, want 3", v)
	}

	ch, err := s.APIKeyChanges(ctx, 1, 100)
	if err != nil || len(ch) != 2 || ch[0].ID != k2.ID || ch[1].ID != k.ID || !ch[1].Revoked() {
		t.Fatalf("changes after 1: got %+v, %v; want partner-b, then partner-a revoked", ch, err)
	}
	if ch, _ := s.APIKeyChanges(ctx, 3, 100); len(ch) != 0 {
		t.Fatalf("changes after the last version: got %d, want none", len(ch))
	}

	// A restarted store keeps it all.
	s.Close()
	s = open()
	got, _ = s.APIKey(ctx, k.ID)
	if got == nil || !got.Revoked() || !got.LastUsed.Equal(used) {
		t.Fatalf("after reopening: %+v", got)
	}
	if err := s.DeleteAPIKey(ctx, k2.ID); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.APIKey(ctx, k2.ID); got != nil {
		t.Fatal("deleted key still there")
	}
}

// TestAPIKeyChangesNeverSkipped: gateways find revocations by polling for
// versions above the last they saw. With writers on two connections racing,
// a poller must still see every change: a version must never become
// visible before a smaller one (which a plain sequence or MAX()+1 allows on
// PostgreSQL, where transactions commit out of order).
func TestAPIKeyChangesNeverSkipped(t *testing.T) { eachStore(t, testAPIKeyChangesNeverSkipped) }

func testAPIKeyChangesNeverSkipped(t *testing.T, open func() *DB) {
	ctx := context.Background()
	writers := []*DB{open(), open()}
	poller := open()
	const perWriter = 60
	var wg sync.WaitGroup
	errs := make(chan error, 2*perWriter)
	for w, s := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				_, k := newKey(t, fmt.Sprintf("w%d-%d", w, i), time.Now())
				k, err := s.CreateAPIKey(ctx, k)
				if err != nil {
					errs <- err
					return
				}
				if i%2 == 0 {
					if _, _, err := s.RevokeAPIKey(ctx, k.ID, time.Now()); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	seen := map[int64]bool{}
	var last int64
	poll := func() {
		ch, err := poller.APIKeyChanges(ctx, last, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range ch {
			seen[k.Rev] = true
			last = k.Rev
		}
	}
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		poll()
	}
	poll()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Every version a key holds now was seen; versions a key held before
	// being revoked were superseded, so the poller may or may not have
	// caught them. What it must not miss is the latest state of each key.
	all, err := poller.APIKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2*perWriter {
		t.Fatalf("got %d keys, want %d", len(all), 2*perWriter)
	}
	for _, k := range all {
		if !seen[k.Rev] {
			t.Fatalf("key %s (%s) at version %d was never seen by the poller", k.ID, k.Name, k.Rev)
		}
	}
	if v, _ := poller.APIKeyVersion(ctx); v != last || v != int64(2*perWriter+perWriter) {
		t.Fatalf("version %d, poller at %d; want both %d", v, last, 3*perWriter)
	}
}
