package node

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ztgate/ztgate/internal/apikey"
	"github.com/ztgate/ztgate/internal/audit"
	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/store"
)

func keysConfig(t *testing.T, enabled bool) *config.Config {
	t.Helper()
	on := "true"
	if !enabled {
		on = "false"
	}
	cfg, err := config.Parse("gw.yaml", []byte(`
identity:
  api_keys: { enabled: `+on+` }
store: { dsn: x.db }
audit: { node: gw1, hmac_key: k }
services:
  - name: orders
    upstream: http://127.0.0.1:1
    routes:
      - { name: r, match: { path: "/**" }, allow: { roles: [Orders.Read] } }
`), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func openTestStore(t *testing.T) *store.DB {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestAPIKeyAdmin(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t)
	cfg := keysConfig(t, true)
	var events []audit.Event
	var recordErr error
	m := &APIKeyAdmin{Store: st, Config: func() *config.Config { return cfg }, Record: func(_ context.Context, ev audit.Event) error {
		if recordErr != nil {
			return recordErr
		}
		events = append(events, ev)
		return nil
	}}
	by := Actor{Name: "admin-token", SrcIP: "10.0.0.5", RequestID: "adm-1", Method: "POST", URL: "/v1/apikeys"}
	req := apikey.Request{Name: "partner-a", Service: "orders", Roles: []string{"Orders.Read"}, TTL: 24 * time.Hour}

	key, k, err := m.Create(ctx, req, by)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := st.APIKey(ctx, k.ID)
	if stored == nil || !apikey.Verify(key, stored.Hash) || stored.CreatedBy != "admin-token" {
		t.Fatalf("stored %+v, want the key's hash, made by admin-token", stored)
	}
	if len(events) != 1 || events[0].EventType != "Admin" || events[0].ResultDetails != "api_key_created" ||
		events[0].Object != "api_key/"+k.ID || events[0].Identity != "admin-token" || events[0].RequestID != "adm-1" || events[0].Service != "orders" {
		t.Fatalf("events %+v, want one Admin api_key_created for %s by admin-token", events, k.ID)
	}

	// Invalid requests are refused before anything is stored.
	bad := req
	bad.Service = "payroll"
	if _, _, err := m.Create(ctx, bad, by); !errors.Is(err, apikey.ErrInvalidRequest) {
		t.Fatalf("unknown service: got %v, want ErrInvalidRequest", err)
	}

	// A creation that cannot be recorded does not happen.
	recordErr = audit.ErrUnavailable
	if _, _, err := m.Create(ctx, req, by); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("unrecorded create: got %v, want audit.ErrUnavailable", err)
	}
	if all, _ := st.APIKeys(ctx); len(all) != 1 {
		t.Fatalf("after an unrecorded create: %d keys stored, want 1", len(all))
	}

	// A revocation that cannot be recorded still happens, and says so.
	rk, changed, err := m.Revoke(ctx, k.ID, by)
	if !errors.Is(err, apikey.ErrUnrecorded) || !changed || !rk.Revoked() {
		t.Fatalf("unrecorded revoke: %+v changed=%v %v; want revoked with ErrUnrecorded", rk, changed, err)
	}
	if got, _ := st.APIKey(ctx, k.ID); !got.Revoked() {
		t.Fatal("unrecorded revoke: the key is not revoked in the store")
	}
	recordErr = nil
	if _, changed, err := m.Revoke(ctx, k.ID, by); err != nil || changed {
		t.Fatalf("revoke again: changed=%v %v; want no change, no error", changed, err)
	}
	if len(events) != 1 {
		t.Fatalf("a revocation that changed nothing was recorded: %+v", events[1:])
	}
	if _, _, err := m.Revoke(ctx, "not-an-id", by); !errors.Is(err, apikey.ErrNotFound) {
		t.Fatalf("revoke a malformed id: got %v, want ErrNotFound", err)
	}

	off := keysConfig(t, false)
	m.Config = func() *config.Config { return off }
	if _, err := m.List(ctx); !errors.Is(err, apikey.ErrDisabled) {
		t.Fatalf("API keys disabled: got %v, want ErrDisabled", err)
	}
}

// TestCLIRecorder: the command line's admin events form a verifiable
// chain of their own, also when several commands (each its own recorder,
// as separate processes are) record at once.
func TestCLIRecorder(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t)
	cfg := keysConfig(t, true)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := CLIRecorder(cfg, st, slog.New(slog.DiscardHandler))
			errs <- rec(ctx, audit.Event{Time: time.Now(), EventType: "Admin", RequestID: "cli-" + string(rune('a'+i)), Decision: "allow"})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	recs, err := st.Chain(ctx, "gw1/cli")
	if err != nil || len(recs) != 8 {
		t.Fatalf("chain gw1/cli: %d records, %v; want 8", len(recs), err)
	}
	if p := audit.NewChain([]byte("k")).Verify(recs); p != nil {
		t.Fatalf("chain broken: %+v", p)
	}
}
