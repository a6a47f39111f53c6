package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"os/user"
	"sync"
	"time"

	"github.com/ztgate/ztgate/internal/admin"
	"github.com/ztgate/ztgate/internal/apikey"
	"github.com/ztgate/ztgate/internal/audit"
	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/store"
)

// Recorder makes an audit event durable, or fails.
type Recorder func(ctx context.Context, ev audit.Event) error

// APIKeyAdmin makes, lists and revokes API keys in the store. Every
// creation and revocation is an audit event (EventType Admin): a key is
// only shown once its creation is recorded; a revocation stands even when
// its event cannot be written (refusing to revoke would be worse), and the
// failure is reported.
type APIKeyAdmin struct {
	Store  *store.DB
	Config func() *config.Config // the configuration in force (its services)
	Record Recorder
	Now    func() time.Time
}

// Actor names who makes a change, for the audit trail: the admin API's
// caller, or the person at the command line (CLIActor).
type Actor = admin.Caller

var _ admin.APIKeys = (*APIKeyAdmin)(nil)

func (m *APIKeyAdmin) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *APIKeyAdmin) enabled() (*config.Config, error) {
	cfg := m.Config()
	if k := cfg.Identity.APIKeys; k == nil || !k.Enabled || m.Store == nil {
		return nil, apikey.ErrDisabled
	}
	return cfg, nil
}

// List returns every key record, newest first.
func (m *APIKeyAdmin) List(ctx context.Context) ([]apikey.Key, error) {
	if _, err := m.enabled(); err != nil {
		return nil, err
	}
	return m.Store.APIKeys(ctx)
}

// Create validates r against the configured services, stores a new key
// and records its creation; it returns the key, to be shown once.
func (m *APIKeyAdmin) Create(ctx context.Context, r apikey.Request, by Actor) (string, apikey.Key, error) {
	cfg, err := m.enabled()
	if err != nil {
		return "", apikey.Key{}, err
	}
	services := make([]string, len(cfg.Services))
	for i, s := range cfg.Services {
		services[i] = s.Name
	}
	if err := r.Validate(services); err != nil {
		return "", apikey.Key{}, err
	}
	raw, k := apikey.New(r, m.now(), by.Name)
	if k, err = m.Store.CreateAPIKey(ctx, k); err != nil {
		return "", apikey.Key{}, fmt.Errorf("store the API key: %w", err)
	}
	if err := m.record(ctx, cfg, by, "api_key_created", k, 201); err != nil {
		// Unrecorded, the key must not exist: it was never shown.
		if derr := m.Store.DeleteAPIKey(context.WithoutCancel(ctx), k.ID); derr != nil {
			err = errors.Join(err, fmt.Errorf("and the unrecorded key %s could not be removed, revoke it: %w", k.ID, derr))
		}
		return "", apikey.Key{}, err
	}
	return raw, k, nil
}

// Revoke revokes the key with the id. It reports whether this call
// revoked it (false: it already was). A revocation whose event could not be
// written still stands; the error then wraps apikey.ErrUnrecorded.
func (m *APIKeyAdmin) Revoke(ctx context.Context, id string, by Actor) (apikey.Key, bool, error) {
	cfg, err := m.enabled()
	if err != nil {
		return apikey.Key{}, false, err
	}
	if !apikey.ValidID(id) {
		return apikey.Key{}, false, fmt.Errorf("%w: %q is not a key id", apikey.ErrNotFound, id)
	}
	k, changed, err := m.Store.RevokeAPIKey(ctx, id, m.now())
	if err != nil || !changed {
		return k, changed, err
	}
	if err := m.record(ctx, cfg, by, "api_key_revoked", k, 200); err != nil {
		return k, true, fmt.Errorf("%w: %w", apikey.ErrUnrecorded, err)
	}
	return k, true, nil
}

func (m *APIKeyAdmin) record(ctx context.Context, cfg *config.Config, by Actor, what string, k apikey.Key, status int) error {
	if m.Record == nil {
		return nil
	}
	id := by.RequestID
	if id == "" {
		id = newEventID("cli")
	}
	return m.Record(context.WithoutCancel(ctx), audit.Event{
		Time: m.now().UTC(), EventType: "Admin", RequestID: id, Result: "Success", ResultDetails: what,
		Decision: "allow", PolicyVersion: cfg.Hash, Service: k.Service, IdentityType: "admin", Identity: by.Name,
		SrcIP: by.SrcIP, Method: by.Method, URL: by.URL, Status: status, Object: "api_key/" + k.ID,
	})
}

// CLIActor names the person running the command line.
func CLIActor(command string) Actor {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return Actor{Name: "cli:" + name + "@" + host, Method: "CLI", URL: "ztgate apikey " + command}
}

// CLIRecorder records the command line's admin events in a chain of its
// own, named after the node with /cli appended (the gateway's chain is the
// running gateway's alone). Commands racing for the chain's next sequence
// number (the store refuses the second) retry after a random pause.
func CLIRecorder(cfg *config.Config, st *store.DB, logger *slog.Logger) Recorder {
	node := cfg.Audit.Node
	if node == "" {
		node, _ = os.Hostname()
	}
	node += "/cli"
	var key []byte
	if cfg.Audit.HMACKey != "" {
		key = []byte(cfg.Audit.HMACKey)
	}
	var mu sync.Mutex // one at a time within this process
	return func(ctx context.Context, ev audit.Event) error {
		mu.Lock()
		defer mu.Unlock()
		var err error
		for range 10 {
			if err = recordOnce(ctx, st, audit.NewChain(key), node, ev, logger); err == nil {
				return nil
			}
			time.Sleep(time.Duration(10+mrand.IntN(90)) * time.Millisecond)
		}
		return err
	}
}

func recordOnce(ctx context.Context, st *store.DB, chain *audit.Chain, node string, ev audit.Event, logger *slog.Logger) error {
	p, err := audit.NewPipeline(ctx, st, chain, node, 1, logger)
	if err != nil {
		return err
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { p.Run(rctx); close(done) }()
	err = p.Record(ctx, ev, 10*time.Second)
	stop()
	<-done
	return err
}
