// Package node wires one gateway node together: it loads the configuration,
// builds the verifiers, the data plane and the admin API, serves them, and
// reloads on SIGHUP or when the file changes. Only cmd/ and the CLI import it.
package node

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"

	"github.com/ztgate/ztgate/internal/admin"
	"github.com/ztgate/ztgate/internal/alert"
	"github.com/ztgate/ztgate/internal/assess"
	"github.com/ztgate/ztgate/internal/audit"
	"github.com/ztgate/ztgate/internal/audit/export"
	"github.com/ztgate/ztgate/internal/authn"
	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/detect"
	"github.com/ztgate/ztgate/internal/explain"
	"github.com/ztgate/ztgate/internal/gateway"
	"github.com/ztgate/ztgate/internal/guard"
	"github.com/ztgate/ztgate/internal/inject"
	"github.com/ztgate/ztgate/internal/limits"
	"github.com/ztgate/ztgate/internal/msgraph"
	"github.com/ztgate/ztgate/internal/policy"
	"github.com/ztgate/ztgate/internal/secrets"
	"github.com/ztgate/ztgate/internal/store"
)

// LoadConfig reads and validates a configuration file, resolving references
// and compiling its policy expressions.
func LoadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path, config.Options{Secrets: secrets.NewResolver})
	if err != nil {
		return nil, err
	}
	if err := policy.ValidateConfig(cfg); err != nil {
		return nil, err
	}
	if err := guard.ValidateConfig(cfg); err != nil {
		return nil, err
	}
	if err := authn.ValidateConfig(cfg); err != nil {
		return nil, err
	}
	if err := inject.ValidateConfig(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Options tune a node.
type Options struct {
	Logger *slog.Logger
	// WatchInterval is how often the config and certificate files are
	// checked for changes; 0 means 2 s.
	WatchInterval time.Duration
	// Ready, if set, receives the bound addresses once both listeners serve.
	Ready func(data, admin net.Addr)
}

// Node is one running gateway.
type Node struct {
	detection *detection      // nil without detection rules
	pipeline  *audit.Pipeline // nil without a store
	// recordAdmin audits a control-plane change (nil without a store).
	recordAdmin func(ctx context.Context, ev audit.Event) error
	blocks      *blocksAPI
	path        string
	opts        Options
	logger      *slog.Logger
	reg         *prometheus.Registry
	gw          *gateway.Gateway

	mu         sync.Mutex
	cfg        *config.Config
	fileSum    [32]byte
	depStamp   string // identity.mtls's files as last loaded (see depStamp)
	loadedAt   time.Time
	lastReload *admin.ReloadResult
	verifiers  map[string]*verifier    // by provider fingerprint
	keys       map[string]*keyVerifier // API keys, by option fingerprint (one in use)
	retired    []chan struct{}         // retired key verifiers, writing their last use
	certs      *certLoader
	state      gateway.State
	alerts     *alert.Raiser
	store      *store.DB
	groups     *msgraph.Metrics // group overage lookups, shared by every provider
	secrets    *secrets.Cache
}

type verifier struct {
	oidc   *authn.OIDC
	name   string
	cancel context.CancelFunc
}

type keyVerifier struct {
	keys   *authn.APIKeys
	cancel context.CancelFunc
	done   chan struct{} // closed when its last-used times are written
}

// Run loads the configuration at path and serves until ctx ends or SIGTERM /
// SIGINT arrives, then drains in-flight requests.
func Run(ctx context.Context, path string, opts Options) error {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.WatchInterval == 0 {
		opts.WatchInterval = 2 * time.Second
	}
	n := &Node{path: path, opts: opts, logger: opts.Logger, verifiers: map[string]*verifier{}, keys: map[string]*keyVerifier{}}
	cfg, sum, err := n.load()
	if err != nil {
		return err
	}
	n.reg = prometheus.NewRegistry()
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := gateway.NewMetrics(n.reg)
	n.groups = msgraph.NewMetrics(n.reg)

	var st *store.DB
	if cfg.Store != nil {
		if st, err = OpenStore(context.Background(), cfg); err != nil {
			return err
		}
		defer st.Close()
		n.store = st
	}
	nodeName := cfg.Audit.Node
	if nodeName == "" {
		nodeName, _ = os.Hostname()
	}
	var alertStore alert.Store
	if st != nil {
		alertStore = st
	}
	n.alerts = alert.NewRaiser(alertStore, nodeName, n.logger, n.reg)
	n.state, err = newState(cfg.State, st, n.reg, n.logger, n.alerts)
	if err != nil {
		return err
	}
	n.state.Inject = inject.NewManager(n.logger)
	tokenFetches := promauto.With(n.reg).NewCounterVec(prometheus.CounterOpts{Name: "ztgate_upstream_token_fetches_total", Help: "Upstream tokens fetched by the gateway (inject), by service, kind and result (ok, error)."}, []string{"service", "kind", "result"})
	n.state.Inject.OnFetch = func(service, kind string, err error) {
		if err == nil {
			tokenFetches.WithLabelValues(service, kind, "ok").Inc()
			return
		}
		tokenFetches.WithLabelValues(service, kind, "error").Inc()
		if te, ok := errors.AsType[*inject.TokenError](err); ok {
			err = te.Err // the service and kind are said already
		}
		n.logger.Warn("upstream token not fetched; requests that need it are refused (503 upstream_token_unavailable)", "service", service, "kind", kind, "error", err)
		n.alerts.Raise("high", "upstream_token_unavailable", fmt.Sprintf("the %s token for service %s cannot be fetched: %v", kind, service, err))
	}
	runCtx, stopVerifiers := context.WithCancel(context.Background())
	defer stopVerifiers()
	go n.state.Detect.Run(runCtx, cfg.Detection.Sync.D())
	n.detection = newDetection(cfg, n.state.Detect, alertStore, nodeName, n.logger, n.reg)
	n.secrets = newSecretCache(n.logger, n.reg, n.alerts)
	n.state.Secrets = n.secrets
	go n.secrets.Run(runCtx)
	rt, err := n.build(runCtx, cfg)
	if err != nil {
		return err
	}
	if err := n.waitSecrets(rt); err != nil {
		// Like identity keys: the node starts, is not ready, and the routes
		// that inject these secrets refuse requests until they are read.
		n.logger.Error("secrets not read at start; the routes that inject them answer 503 secret_unavailable until they are", "error", err)
	}
	var onWritten func([]audit.Record)
	if n.detection != nil {
		onWritten = n.detection.Offer
	}
	// The callbacks are set before the pipeline's writer and shipper start.
	setup := func(pipeline *audit.Pipeline) {
		pipeline.OnFailure = func(events int) {
			n.alerts.Raise("high", "audit_unavailable", fmt.Sprintf("audit events cannot be made durable in the store; requests are refused (%d events)", events))
		}
		spooled := promauto.With(n.reg).NewCounter(prometheus.CounterOpts{Name: "ztgate_audit_spooled_total", Help: "Audit events written to the local spool because the store failed (audit.on_failure: buffer); with the journal, the events waiting in it when the store started failing."})
		replayed := promauto.With(n.reg).NewCounter(prometheus.CounterOpts{Name: "ztgate_audit_replayed_total", Help: "Spooled audit events replayed into the store, or journal events shipped once the store was back."})
		promauto.With(n.reg).NewGaugeFunc(prometheus.GaugeOpts{Name: "ztgate_audit_spool_events", Help: "Audit events waiting in the local spool, or in the journal for the store."}, func() float64 { return float64(pipeline.SpoolLen()) })
		pipeline.OnSpool = func(events int, _ error) {
			spooled.Add(float64(events))
			n.alerts.Raise("medium", "audit_spooling", fmt.Sprintf("the audit store is failing; %d events wait locally and are written to it when it is back", events))
		}
		pipeline.OnReplay = func(events int) { replayed.Add(float64(events)) }
	}
	pipeline, stopAudit, err := startAudit(runCtx, cfg, st, n.logger, n.reg, onWritten, setup)
	if err != nil {
		return err
	}
	n.pipeline = pipeline
	n.blocks = &blocksAPI{state: n.state.Detect, now: time.Now}
	if pipeline != nil {
		wait := cfg.Audit.WriteTimeout.D()
		n.blocks.rec = func(ctx context.Context, ev audit.Event) error { return pipeline.Record(ctx, ev, wait) }
		n.recordAdmin = n.blocks.rec
	}
	if n.detection != nil && pipeline != nil {
		wait := cfg.Audit.WriteTimeout.D()
		n.detection.record = func(ctx context.Context, ev audit.Event) error { return pipeline.Record(ctx, ev, wait) }
		go n.detection.Run(runCtx)
	}
	defer stopAudit()
	n.gw = gateway.New(rt, n.logger, metrics, pipeline, cfg.Audit.WriteTimeout.D())
	n.cfg, n.fileSum, n.loadedAt = cfg, sum, time.Now()
	n.depStamp = depStamp(cfg)
	n.retireVerifiers(cfg)

	var tlsConf *tls.Config
	if t := cfg.Listen.TLS; t != nil {
		n.certs = &certLoader{certFile: t.CertFile, keyFile: t.KeyFile}
		if err := n.certs.load(); err != nil {
			return fmt.Errorf("listen.tls: %w", err)
		}
		tlsConf, err = serverTLS(t, cfg.Identity.MTLS != nil, n.certs)
		if err != nil {
			return err
		}
	}

	dataLn, err := net.Listen("tcp", cfg.Listen.Address)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen.Address, err)
	}
	adminLn, err := net.Listen("tcp", cfg.Admin.Address)
	if err != nil {
		dataLn.Close()
		return fmt.Errorf("admin listen %s: %w", cfg.Admin.Address, err)
	}
	errLog := slog.NewLogLogger(n.logger.Handler(), slog.LevelWarn)
	data := &http.Server{
		Handler:           n.gw,
		ReadHeaderTimeout: cfg.Listen.ReadHeaderTimeout.D(),
		ReadTimeout:       cfg.Listen.ReadTimeout.D(),
		IdleTimeout:       cfg.Listen.IdleTimeout.D(),
		MaxHeaderBytes:    cfg.Listen.MaxHeaderBytes,
		ErrorLog:          errLog,
		TLSConfig:         tlsConf,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:      250,
			MaxReceiveBufferPerStream: 1 << 20,
		},
	}
	deps := admin.Deps{Gatherer: n.reg, Status: n.status, Explain: n.explain, Alerts: n.listAlerts, Audit: n.auditQuery(),
		Blocks: n.blocks, Assess: n.assess, Token: n.adminToken, Loopback: isLoopbackAddr(adminLn.Addr())}
	if st != nil {
		keyAdmin := &APIKeyAdmin{Store: st, Config: n.config}
		if pipeline != nil {
			keyAdmin.Record = func(ctx context.Context, ev audit.Event) error {
				return pipeline.Record(ctx, ev, n.config().Audit.WriteTimeout.D())
			}
		}
		deps.APIKeys = keyAdmin
	}
	if !deps.Loopback && cfg.Admin.Token == "" {
		n.logger.Warn("the admin listener is not on loopback and admin.token is not set: the admin API's key management (/v1/apikeys) refuses every request", "admin", adminLn.Addr().String())
	}
	adm := &http.Server{
		Handler:           admin.Handler(deps),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          errLog,
	}
	errc := make(chan error, 2)
	go func() {
		var err error
		if tlsConf != nil {
			err = data.ServeTLS(dataLn, "", "")
		} else {
			err = data.Serve(dataLn)
		}
		errc <- err
	}()
	go func() { errc <- adm.Serve(adminLn) }()
	n.logger.Info("ztgate serving", "address", dataLn.Addr().String(), "tls", tlsConf != nil, "admin", adminLn.Addr().String(), "config", path, "config_hash", cfg.Hash)
	if opts.Ready != nil {
		opts.Ready(dataLn.Addr(), adminLn.Addr())
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	tick := time.NewTicker(opts.WatchInterval)
	defer tick.Stop()

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case s := <-sigs:
			if s == syscall.SIGHUP {
				n.logger.Info("SIGHUP: reloading configuration")
				n.reload(runCtx, true)
				continue
			}
			n.logger.Info("signal: shutting down", "signal", s.String())
			break loop
		case <-tick.C:
			n.reload(runCtx, false)
			if n.certs != nil {
				if changed, err := n.certs.reloadIfChanged(); err != nil {
					n.logger.Error("TLS certificate not reloaded; the old one keeps serving", "error", err)
				} else if changed {
					n.logger.Info("TLS certificate reloaded", "cert_file", n.certs.certFile)
				}
			}
		case err := <-errc:
			runErr = fmt.Errorf("serve: %w", err)
			break loop
		}
	}
	n.mu.Lock()
	grace := n.cfg.Listen.ShutdownTimeout.D()
	n.mu.Unlock()
	shutCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	n.logger.Info("draining in-flight requests", "timeout", grace.String())
	if err := data.Shutdown(shutCtx); err != nil {
		n.logger.Error("drain incomplete", "error", err)
	}
	_ = adm.Shutdown(shutCtx)
	n.gw.Runtime().Close()
	n.mu.Lock()
	for _, kv := range n.keys {
		kv.cancel()
		n.retired = append(n.retired, kv.done)
	}
	for _, done := range n.retired {
		<-done // last-used times written before the store closes
	}
	n.mu.Unlock()
	n.logger.Info("ztgate stopped")
	return runErr
}

func (n *Node) load() (*config.Config, [32]byte, error) {
	data, err := os.ReadFile(n.path)
	if err != nil {
		return nil, [32]byte{}, &config.Error{File: n.path, Msg: fmt.Sprintf("cannot read configuration: %v", errors.Unwrap(err))}
	}
	sum := sha256.Sum256(data)
	if len(data) > config.MaxFileBytes {
		return nil, sum, &config.Error{File: n.path, Msg: "configuration too large"}
	}
	cfg, err := config.Parse(n.path, data, config.Options{Secrets: secrets.NewResolver})
	if err != nil {
		return nil, sum, err
	}
	if err := policy.ValidateConfig(cfg); err != nil {
		return nil, sum, err
	}
	if err := guard.ValidateConfig(cfg); err != nil {
		return nil, sum, err
	}
	if err := authn.ValidateConfig(cfg); err != nil {
		return nil, sum, err
	}
	if err := inject.ValidateConfig(cfg); err != nil {
		return nil, sum, err
	}
	return cfg, sum, nil
}

// build makes a runtime for cfg, reusing the verifiers of unchanged
// providers so their keys stay warm across reloads.
func (n *Node) build(ctx context.Context, cfg *config.Config) (*gateway.Runtime, error) {
	var vs []authn.Verifier
	maxToken := 0
	for _, p := range cfg.Identity.Providers {
		fp := providerKey(p)
		v, ok := n.verifiers[fp]
		if !ok {
			o := authn.FromConfigWith(p, authn.Deps{Logger: n.logger, GroupMetrics: n.groups})
			vctx, cancel := context.WithCancel(ctx)
			go o.Run(vctx)
			v = &verifier{oidc: o, name: p.Name, cancel: cancel}
			n.verifiers[fp] = v
		}
		vs = append(vs, v.oidc)
		maxToken = max(maxToken, p.MaxTokenBytes)
	}
	if maxToken == 0 {
		maxToken = 16384
	}
	an := authn.NewAuthenticator(maxToken, vs...)
	if m := cfg.Identity.MTLS; m != nil {
		// Built afresh on every reload: the trust bundle and CRL are read
		// now, and verified chains remembered by the old runtime go with it.
		v, err := authn.MTLSFromConfig(m, filepath.Dir(cfg.File))
		if err != nil {
			return nil, err
		}
		an.WithMTLS(v)
	}
	if k := cfg.Identity.APIKeys; k != nil && k.Enabled {
		kv, err := n.keyVerifier(ctx, k)
		if err != nil {
			return nil, err
		}
		an.UseAPIKeys(kv.keys, k.Header)
	}
	return gateway.Build(cfg, an, n.state, n.logger)
}

// auditReload records a reload, done or refused, as an Admin audit event
// (off the reload's lock: the event is durable moments later).
func (n *Node) auditReload(now time.Time, what string, cfg *config.Config, err error) {
	if n.recordAdmin == nil {
		return
	}
	ev := audit.Event{
		Time: now.UTC(), EventType: "Admin", RequestID: newEventID("cfg"), Result: "Success", ResultDetails: what,
		Decision: "allow", PolicyVersion: cfg.Hash, IdentityType: "admin", Identity: "file:" + n.path, Method: "RELOAD",
		URL: "config/" + cfg.Hash, Status: 200, Object: "config/" + cfg.Hash,
	}
	if err != nil {
		ev.Result, ev.Status, ev.Message = "Failure", 400, err.Error()
	}
	rec := n.recordAdmin
	go func() {
		if err := rec(context.Background(), ev); err != nil {
			n.logger.Error("reload not audited", "error", err)
		}
	}()
}

// depStamp identifies the content of the files a configuration names
// beside itself that a reload must pick up when they change: the mTLS
// trust bundle and CRL (by size and modification time).
func depStamp(cfg *config.Config) string {
	var b strings.Builder
	for _, f := range authn.MTLSFiles(cfg.Identity.MTLS, filepath.Dir(cfg.File)) {
		fi, err := os.Stat(f)
		if err != nil {
			fmt.Fprintf(&b, "%s:missing;", f)
			continue
		}
		fmt.Fprintf(&b, "%s:%d:%d;", f, fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String()
}

// providerKey identifies a provider's configuration, so that a reload
// keeps the verifier (its keys, its token and group caches) of a provider
// that did not change. It is a map key only, never shown: it holds the
// group_overage client secret.
func providerKey(p config.Provider) string {
	g := p.GroupOverage
	p.GroupOverage = nil // by value below: its address differs on every load
	k := fmt.Sprintf("%#v", p)
	if g != nil {
		k += fmt.Sprintf("%#v", *g)
	}
	return k
}

func keysFingerprint(k *config.APIKeys) string { return fmt.Sprint(k.PollInterval, k.MaxStale) }

// keyVerifier returns the API key verifier for k, reusing the running one
// when its options are unchanged. A new one reads every key before it is
// used, so a reload never serves from an empty cache.
func (n *Node) keyVerifier(ctx context.Context, k *config.APIKeys) (*keyVerifier, error) {
	fp := keysFingerprint(k)
	if kv, ok := n.keys[fp]; ok {
		return kv, nil
	}
	if n.store == nil {
		return nil, errors.New("identity.api_keys needs a store")
	}
	v := authn.NewAPIKeys(n.store, n.logger, authn.APIKeyOptions{Poll: k.PollInterval.D(), MaxStale: k.MaxStale.D()})
	v.Sync(ctx)
	if ok, err := v.Ready(); !ok {
		return nil, fmt.Errorf("identity.api_keys: %w", err)
	}
	vctx, cancel := context.WithCancel(ctx)
	kv := &keyVerifier{keys: v, cancel: cancel, done: make(chan struct{})}
	go func() { v.Run(vctx); close(kv.done) }()
	n.keys[fp] = kv
	return kv, nil
}

// retireVerifiers stops the verifiers that cfg no longer uses.
func (n *Node) retireVerifiers(cfg *config.Config) {
	keep := map[string]bool{}
	for _, p := range cfg.Identity.Providers {
		keep[providerKey(p)] = true
	}
	for fp, v := range n.verifiers {
		if !keep[fp] {
			v.cancel()
			delete(n.verifiers, fp)
		}
	}
	n.retired = slices.DeleteFunc(n.retired, func(done chan struct{}) bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
	keepKeys := ""
	if k := cfg.Identity.APIKeys; k != nil && k.Enabled {
		keepKeys = keysFingerprint(k)
	}
	for fp, kv := range n.keys {
		if fp != keepKeys {
			kv.cancel() // its last-used times are written as it stops
			n.retired = append(n.retired, kv.done)
			delete(n.keys, fp)
		}
	}
}

// reload builds the whole new configuration first; on any error the old one
// keeps serving and the error is logged and shown on /readyz.
func (n *Node) reload(ctx context.Context, force bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !force {
		data, err := os.ReadFile(n.path)
		if err == nil && sha256.Sum256(data) == n.fileSum && depStamp(n.cfg) == n.depStamp {
			return
		}
	}
	cfg, sum, err := n.load()
	if err == nil && (cfg.Listen.Address != n.cfg.Listen.Address || cfg.Admin.Address != n.cfg.Admin.Address) {
		err = errors.New("listen.address and admin.address cannot change on reload; restart the gateway")
	}
	if err == nil && (fmt.Sprint(cfg.Listen.TLS) != fmt.Sprint(n.cfg.Listen.TLS) || (cfg.Identity.MTLS == nil) != (n.cfg.Identity.MTLS == nil)) {
		err = errors.New("listen.tls, and whether identity.mtls is set, cannot change on reload (the listener asks for client certificates as it started); restart the gateway")
	}
	if err == nil && cfg.State != n.cfg.State {
		err = errors.New("state cannot change on reload; restart the gateway")
	}
	if err == nil && (fmt.Sprint(cfg.Store) != fmt.Sprint(n.cfg.Store) || !reflect.DeepEqual(cfg.Audit, n.cfg.Audit)) {
		err = errors.New("store and audit cannot change on reload; restart the gateway")
	}
	var rt *gateway.Runtime
	if err == nil {
		rt, err = n.build(ctx, cfg)
	}
	if err == nil {
		// A reload that adds a secret it cannot read keeps the old
		// configuration, whose secrets are serving.
		if err = n.waitSecrets(rt); err != nil {
			rt.Close()
			err = fmt.Errorf("secrets: %w", err)
		}
	}
	now := time.Now()
	if err != nil {
		n.fileSum = sum // do not retry the same broken files every tick
		n.depStamp = depStamp(n.cfg)
		n.lastReload = &admin.ReloadResult{At: now.UTC().Format(time.RFC3339), OK: false, Error: err.Error()}
		n.logger.Error("configuration reload failed; the previous configuration keeps serving", "config", n.path, "error", err)
		n.auditReload(now, "config_reload_failed", n.cfg, err)
		n.retireVerifiers(n.cfg)
		return
	}
	old := n.gw.Swap(rt)
	n.retireVerifiers(cfg)
	n.cfg, n.fileSum, n.loadedAt = cfg, sum, now
	n.depStamp = depStamp(cfg)
	n.lastReload = &admin.ReloadResult{At: now.UTC().Format(time.RFC3339), OK: true}
	n.logger.Info("configuration reloaded", "config", n.path, "config_hash", cfg.Hash)
	n.auditReload(now, "config_reloaded", cfg, nil)
	// Requests in flight keep their runtime; idle connections go.
	time.AfterFunc(time.Minute, old.Close)
}

// waitSecrets waits (a bounded time) for the first read of the secrets rt
// injects.
func (n *Node) waitSecrets(rt *gateway.Runtime) error {
	entries := rt.SecretEntries()
	if len(entries) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return n.secrets.Wait(ctx, entries)
}

// newSecretCache makes the node's secret cache with its metrics.
func newSecretCache(logger *slog.Logger, reg prometheus.Registerer, alerts *alert.Raiser) *secrets.Cache {
	c := secrets.NewCache(logger)
	reads := promauto.With(reg).NewCounterVec(prometheus.CounterOpts{Name: "ztgate_secret_reads_total", Help: "Background reads of injected secrets, by provider and result (ok, error)."}, []string{"provider", "result"})
	c.OnRefresh = func(provider string, err error) {
		if err != nil {
			reads.WithLabelValues(provider, "error").Inc()
			alerts.Raise("medium", "secret_refresh_failing", "a secret provider cannot be read; cached values serve until max_stale")
			return
		}
		reads.WithLabelValues(provider, "ok").Inc()
	}
	return c
}

// config returns the configuration in force.
func (n *Node) config() *config.Config {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cfg
}

func (n *Node) adminToken() string { return n.config().Admin.Token }

func isLoopbackAddr(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

func (n *Node) explain(ctx context.Context, req explain.Request) (*explain.Result, error) {
	rt := n.gw.Runtime()
	return explain.Explain(ctx, rt.Config(), req, explain.Options{Authenticator: rt.Authenticator()})
}

// auditQuery serves the admin API's audit events (nil without a store).
func (n *Node) auditQuery() admin.AuditFunc {
	if n.store == nil {
		return nil
	}
	return func(ctx context.Context, q admin.AuditQuery) ([]json.RawMessage, string, error) {
		if n.pipeline != nil {
			// With the journal, the store is a few milliseconds behind the
			// answered requests: wait for it, so a caller sees its own.
			fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := n.pipeline.Flush(fctx)
			cancel()
			if err != nil {
				return nil, "", err
			}
		}
		recs, next, err := n.store.Query(ctx, store.Filter{Since: q.Since, Decision: q.Decision, Identity: q.Identity, Route: q.Route, After: q.After, Limit: q.Limit})
		if err != nil {
			return nil, "", err
		}
		out := make([]json.RawMessage, len(recs))
		for i, r := range recs {
			out[i] = json.RawMessage(r.Body)
		}
		return out, next, nil
	}
}

// assess assesses the configuration in force against the audit trail.
func (n *Node) assess(ctx context.Context, since time.Duration, record bool) (*assess.Report, error) {
	if n.pipeline != nil {
		// The assessment reads the trail: let it see every answered request.
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := n.pipeline.Flush(fctx)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	cfg := n.gw.Runtime().Config()
	raw, _ := os.ReadFile(cfg.File) // assess checks it is the file in force
	o := assess.Options{Since: since, Name: n.path, Raw: raw, Record: record}
	if n.store != nil {
		o.Audit, o.History = n.store, n.store
	}
	return assess.Run(ctx, cfg, o)
}

func (n *Node) listAlerts(ctx context.Context, since time.Time) ([]alert.Alert, error) {
	if n.store == nil {
		return nil, errors.New("no store configured: alerts are only logged")
	}
	return n.store.Alerts(ctx, since, 1000)
}

func (n *Node) status() admin.Readiness {
	n.mu.Lock()
	defer n.mu.Unlock()
	r := admin.Readiness{Ready: true, ConfigHash: n.cfg.Hash, ConfigFile: n.path, LoadedAt: n.loadedAt.UTC().Format(time.RFC3339), LastReload: n.lastReload}
	for _, p := range n.cfg.Identity.Providers {
		v := n.verifiers[providerKey(p)]
		ps := admin.ProviderStatus{Name: p.Name}
		if v != nil {
			ok, err := v.oidc.Ready()
			ps.KeysLoaded = ok
			if err != nil {
				ps.Error = err.Error()
			}
		}
		if !ps.KeysLoaded {
			r.Ready = false
			r.Problems = append(r.Problems, fmt.Sprintf("identity provider %s: keys not loaded", p.Name))
		}
		r.Providers = append(r.Providers, ps)
	}
	if n.secrets != nil {
		if ps := n.secrets.Problems(); len(ps) > 0 {
			r.Ready = false
			r.Problems = append(r.Problems, ps...)
		}
	}
	if k := n.cfg.Identity.APIKeys; k != nil && k.Enabled {
		if kv := n.keys[keysFingerprint(k)]; kv != nil {
			// Keys were read before the verifier served (keyVerifier). A
			// store outage later refuses API key requests after max_stale,
			// shown here, but does not make the node unready: that would
			// take every node out of service for its other callers too.
			if ok, err := kv.keys.Ready(); !ok {
				r.Problems = append(r.Problems, err.Error())
			}
		}
	}
	if n.lastReload != nil && !n.lastReload.OK {
		r.Problems = append(r.Problems, "last reload failed; the previous configuration is serving: "+n.lastReload.Error)
	}
	return r
}

// serverTLS builds the listener's TLS configuration. client_ca_file is
// checked in the handshake. With identity.mtls (mtls), certificates are
// asked for even without client_ca_file and verified per request against
// the trust bundle of the runtime serving it, so reloads apply to them.
func serverTLS(t *config.ListenTLS, mtls bool, certs *certLoader) (*tls.Config, error) {
	c := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: certs.get,
		NextProtos:     []string{"h2", "http/1.1"},
	}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("listen.tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("listen.tls.client_ca_file %s: no PEM certificates", t.ClientCAFile)
		}
		c.ClientCAs = pool
	}
	switch {
	case t.ClientAuth == "optional" && c.ClientCAs != nil:
		c.ClientAuth = tls.VerifyClientCertIfGiven
	case t.ClientAuth == "require" && c.ClientCAs != nil:
		c.ClientAuth = tls.RequireAndVerifyClientCert
	case t.ClientAuth == "optional" && mtls:
		c.ClientAuth = tls.RequestClientCert
	case t.ClientAuth == "require" && mtls:
		c.ClientAuth = tls.RequireAnyClientCert
	}
	return c, nil
}

// certLoader serves the listener's certificate and reloads it when its
// files change.
type certLoader struct {
	certFile, keyFile string
	mu                sync.RWMutex
	cert              *tls.Certificate
	certMod, keyMod   time.Time
}

func (c *certLoader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cert, nil
}

func (c *certLoader) load() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return err
	}
	cm, km := modTime(c.certFile), modTime(c.keyFile)
	c.mu.Lock()
	c.cert, c.certMod, c.keyMod = &cert, cm, km
	c.mu.Unlock()
	return nil
}

func (c *certLoader) reloadIfChanged() (bool, error) {
	c.mu.RLock()
	same := modTime(c.certFile).Equal(c.certMod) && modTime(c.keyFile).Equal(c.keyMod)
	c.mu.RUnlock()
	if same {
		return false, nil
	}
	if err := c.load(); err != nil {
		return false, err
	}
	return true, nil
}

func modTime(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// newState builds rate limit and quota state: per node, or in Redis (with
// per-node limits as the rate limit fallback).
// With driver local, quotas are kept in the store when there is one, so a
// single node keeps them across restarts.
func newState(st config.State, db *store.DB, reg prometheus.Registerer, logger *slog.Logger, alerts *alert.Raiser) (gateway.State, error) {
	local := limits.NewLocal(st.MaxKeys, nil)
	if st.Driver != "redis" {
		var quotas limits.QuotaStore = limits.NewLocalQuotas(st.MaxKeys, nil)
		if db != nil {
			quotas = db.Quotas()
		}
		return gateway.State{Limits: local, Quotas: quotas, Detect: detect.NewLocalState()}, nil
	}
	opts, err := redis.ParseURL(st.URL)
	if err != nil {
		return gateway.State{}, fmt.Errorf("state.url: %w", err)
	}
	opts.DialTimeout = 2 * time.Second
	opts.ReadTimeout = 250 * time.Millisecond
	opts.WriteTimeout = 250 * time.Millisecond
	opts.MaxRetries = -1 // a limit decision is never worth a retry storm
	opts.DialerRetries = 1
	opts.DialerRetryTimeout = 10 * time.Millisecond
	client := redis.NewClient(opts)
	r := limits.NewRedis(client, "ztgate:rl:", local, logger)
	failures := prometheus.NewCounter(prometheus.CounterOpts{Name: "ztgate_ratelimit_store_failures_total", Help: "Rate limit decisions Redis could not answer (on_store_failure applied)."})
	reg.MustRegister(failures)
	r.OnFail = func() {
		failures.Inc()
		alerts.Raise("high", "rate_limit_store_unavailable", "Redis cannot answer rate limit decisions; on_store_failure applies")
	}
	return gateway.State{Limits: r, Quotas: limits.NewRedisQuotas(client, "ztgate:q:"), Detect: detect.NewRedisState(client, "ztgate:detect:", logger)}, nil
}

// startAudit starts the audit pipeline into st and the exporters fed from
// it; without a store there is no audit (nil pipeline). The returned func
// stops the pipeline after writing what is queued, then the exporters after
// delivering what they hold (10 s at most).
func startAudit(ctx context.Context, cfg *config.Config, st *store.DB, logger *slog.Logger, reg prometheus.Registerer, onWritten func([]audit.Record), setup func(*audit.Pipeline)) (*audit.Pipeline, func(), error) {
	if st == nil {
		logger.Warn("no store configured: decisions are logged but not audited")
		return nil, func() {}, nil
	}
	name := auditNode(cfg)
	var key []byte
	if cfg.Audit.HMACKey != "" {
		key = []byte(cfg.Audit.HMACKey)
	}
	if cfg.Audit.Commit != "store" {
		if err := replayLeftSpool(ctx, cfg, st, name, logger); err != nil {
			return nil, nil, err
		}
	}
	p, err := audit.NewPipeline(ctx, st, audit.NewChain(key), name, 4096, logger)
	if err != nil {
		return nil, nil, err
	}
	var spool *audit.Spool
	var journal *audit.Journal
	if cfg.Audit.Commit != "store" {
		dir := journalDir(cfg, name)
		if journal, err = audit.OpenJournal(dir, cfg.Audit.JournalMaxBytes, cfg.Audit.JournalFsync); err != nil {
			return nil, nil, err
		}
		if err := p.UseJournal(journal, cfg.Audit.OnFailure != "buffer"); err != nil {
			journal.Close()
			return nil, nil, err
		}
		if n := p.SpoolLen(); n > 0 {
			logger.Warn("audit journal holds events from an earlier run that the store does not have; they are shipped now", "events", n, "journal", dir)
		}
	} else if cfg.Audit.OnFailure == "buffer" {
		dir := spoolDir(cfg)
		if spool, err = audit.OpenSpool(dir, cfg.Audit.SpoolMaxBytes); err != nil {
			return nil, nil, err
		}
		if err := p.UseSpool(spool); err != nil {
			spool.Close()
			return nil, nil, err
		}
		if n := spool.Len(); n > 0 {
			logger.Warn("audit spool holds events from an earlier run; they are replayed into the store", "events", n, "spool", spool.Path())
		}
	}
	closeLocal := func() {
		if spool != nil {
			spool.Close()
		}
		if journal != nil {
			journal.Close()
		}
	}
	exporters, err := export.FromConfig(cfg.Audit.Exporters, export.Options{Logger: logger, Metrics: export.NewMetrics(reg), Node: name, Dir: filepath.Dir(cfg.File)})
	if err != nil {
		closeLocal()
		return nil, nil, err
	}
	p.OnWritten = onWritten
	if len(exporters) > 0 {
		// Exporters see a batch only once it is durable (store or spool),
		// and never hold the writer up: Offer drops what does not fit.
		p.OnWritten = exporters.Offer
		if onWritten != nil {
			p.OnWritten = func(recs []audit.Record) { exporters.Offer(recs); onWritten(recs) }
		}
		exporters.Start()
		for _, e := range exporters {
			logger.Info("audit exporter started", "exporter", e.Name())
		}
	}
	if setup != nil {
		setup(p)
	}
	pctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(pctx); close(done) }()
	if keep := cfg.Audit.Retention.D(); keep > 0 {
		chain := audit.NewChain(key)
		go prune(pctx, st, chain, keep, logger)
	}
	logger.Info("audit to store", "driver", cfg.Store.Driver, "node", name, "keyed_chain", key != nil, "commit", cfg.Audit.Commit, "on_failure", cfg.Audit.OnFailure)
	return p, func() {
		stop()
		<-done
		if err := exporters.Close(10 * time.Second); err != nil {
			logger.Warn("audit exporters closed with an error", "error", err)
		}
		closeLocal()
	}, nil
}

// spoolDir is the audit spool of commit: store with on_failure: buffer.
func spoolDir(cfg *config.Config) string {
	dir := cfg.Audit.SpoolDir
	if dir == "" {
		dir = "audit-spool"
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(filepath.Dir(cfg.File), dir)
	}
	return dir
}

// replayLeftSpool writes into st, before the journal starts, what a spool
// left by an earlier run under commit: store (with on_failure: buffer)
// still holds, so that switching to the journal loses nothing; the chain
// then continues after it. A store that cannot take it stops the start.
func replayLeftSpool(ctx context.Context, cfg *config.Config, st *store.DB, name string, logger *slog.Logger) error {
	dir := spoolDir(cfg)
	if _, err := os.Stat(filepath.Join(dir, "audit-spool.jsonl")); err != nil {
		return nil
	}
	sp, err := audit.OpenSpool(dir, cfg.Audit.SpoolMaxBytes)
	if err != nil {
		return err
	}
	defer sp.Close()
	if sp.Len() == 0 {
		return nil
	}
	p, err := audit.NewPipeline(ctx, st, audit.NewChain(nil), name, 1, logger)
	if err != nil {
		return err
	}
	if err := p.UseSpool(sp); err != nil {
		return err
	}
	n := sp.Len()
	if err := p.ReplaySpool(ctx); err != nil {
		return fmt.Errorf("audit spool %s from an earlier run (commit: store) holds %d events the store could not take: %w", sp.Path(), n, err)
	}
	logger.Info("audit spool from an earlier run replayed into the store before the journal starts", "events", n, "spool", sp.Path())
	return nil
}

// auditNode is this gateway's name in the audit chain.
func auditNode(cfg *config.Config) string {
	if cfg.Audit.Node != "" {
		return cfg.Audit.Node
	}
	name, _ := os.Hostname()
	return name
}

// journalDir is the audit journal of node name under cfg.
func journalDir(cfg *config.Config, name string) string {
	dir := cfg.Audit.JournalDir
	if dir == "" {
		dir = filepath.Join("audit-journal", strings.NewReplacer("/", "_", "\\", "_", "..", "_").Replace(name))
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(filepath.Dir(cfg.File), dir)
	}
	return dir
}

// SettleJournal brings st up to date with the audit journal of cfg's node,
// for a command that reads the store (ztgate audit query and verify, ztgate
// assess). When no process holds the journal (the gateway stopped, or was
// killed before it shipped everything), what it left is shipped now; when
// a running gateway holds it, SettleJournal waits (up to wait) until the
// store has what the journal held when it was called.
func SettleJournal(ctx context.Context, cfg *config.Config, st *store.DB, wait time.Duration, logger *slog.Logger) error {
	if cfg.Store == nil || cfg.Audit.Commit == "store" {
		return nil
	}
	name := auditNode(cfg)
	dir := journalDir(cfg, name)
	if _, err := os.Stat(dir); err != nil {
		return nil // no journal: this node never ran with one here
	}
	want, err := audit.JournalLast(dir)
	if err != nil || want == 0 {
		return err // an empty journal: nothing to ship or wait for
	}
	deadline := time.Now().Add(wait)
	for {
		// Opening it again each time: a gateway killed a moment ago lets go
		// of its journal when the kernel has finished with it.
		j, err := audit.OpenJournal(dir, cfg.Audit.JournalMaxBytes, false)
		if err == nil {
			return shipLeftJournal(ctx, j, st, name, dir, logger)
		}
		if !errors.Is(err, audit.ErrJournalInUse) {
			return err
		}
		have, _, err := st.Last(ctx, name)
		if err != nil {
			return err
		}
		if have >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the running gateway has not shipped its audit journal into the store within %v (store at event %d, journal at %d): is the store failing?", wait, have, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// shipLeftJournal ships the journal j that no gateway holds into st.
func shipLeftJournal(ctx context.Context, j *audit.Journal, st *store.DB, name, dir string, logger *slog.Logger) error {
	defer j.Close()
	if j.Len() == 0 {
		return nil
	}
	p, err := audit.NewPipeline(ctx, st, audit.NewChain(nil), name, 1, logger)
	if err != nil {
		return err
	}
	if err := p.UseJournal(j, true); err != nil {
		return err
	}
	if n := p.SpoolLen(); n > 0 {
		logger.Info("audit journal left by a gateway that is not running: shipping it into the store", "events", n, "journal", dir)
	}
	return p.ShipJournal(ctx)
}

// prune removes audit events older than keep, at start and hourly.
func prune(ctx context.Context, st *store.DB, chain *audit.Chain, keep time.Duration, logger *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		n, err := st.Prune(ctx, time.Now().Add(-keep), chain.CheckpointMAC)
		switch {
		case err != nil && ctx.Err() == nil:
			logger.Error("audit retention: events not pruned", "error", err)
		case n > 0:
			logger.Info("audit retention: old events removed; the chain continues from a checkpoint", "events", n, "older_than", keep.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// OpenStore opens the configured store; a relative SQLite path is relative
// to the configuration file.
func OpenStore(ctx context.Context, cfg *config.Config) (*store.DB, error) {
	if cfg.Store == nil {
		return nil, errors.New("no store configured")
	}
	dsn := cfg.Store.DSN
	if cfg.Store.Driver == "postgres" {
		st, err := store.OpenPostgres(ctx, dsn)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		return st, nil
	}
	if !strings.HasPrefix(dsn, "file:") && !filepath.IsAbs(dsn) {
		dsn = filepath.Join(filepath.Dir(cfg.File), dsn)
	}
	st, err := store.OpenSQLite(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return st, nil
}
