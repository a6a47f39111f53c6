package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztgate/ztgate/internal/alert"
	"github.com/ztgate/ztgate/internal/audit"
	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/detect"
)

// detection runs the detector over the audit events once they are durable
// (never on the request path) and acts on what fires: an alert in the
// store for every detection, and a block or a raised risk when the rule
// says so, shared with the other nodes through the state backend.
type detection struct {
	det     *detect.Detector
	state   *detect.State
	alerts  alert.Store // nil: logged and counted only
	node    string
	logger  *slog.Logger
	queue   chan []audit.Record
	dropped prometheus.Counter
	fired   *prometheus.CounterVec
	// record audits a block (set once the pipeline exists).
	record func(ctx context.Context, ev audit.Event) error
	now    func() time.Time
}

// detectionQueue bounds the batches waiting for the detector; beyond it
// batches are counted and skipped (the store keeps every event).
const detectionQueue = 1024

func newDetection(cfg *config.Config, state *detect.State, alerts alert.Store, node string, logger *slog.Logger, reg prometheus.Registerer) *detection {
	if len(cfg.Detection.Rules) == 0 {
		return nil
	}
	rules := make([]detect.Rule, len(cfg.Detection.Rules))
	for i, r := range cfg.Detection.Rules {
		rules[i] = r.Rule()
	}
	d := &detection{
		det: detect.New(rules), state: state, alerts: alerts, node: node, logger: logger,
		queue:   make(chan []audit.Record, detectionQueue),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "ztgate_detect_dropped_batches_total", Help: "Batches of audit events the detector could not keep up with (skipped; the store has them)."}),
		fired:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ztgate_detections_total", Help: "Detections, by rule and action."}, []string{"rule", "action"}),
		now:     time.Now,
	}
	reg.MustRegister(d.dropped, d.fired)
	return d
}

// Offer hands the detector a durable batch; it never blocks the writer.
// The writer reuses recs' array once Offer returns: the queue takes a copy.
func (d *detection) Offer(recs []audit.Record) {
	select {
	case d.queue <- slices.Clone(recs):
	default:
		d.dropped.Inc()
	}
}

// Run observes the batches until ctx ends.
func (d *detection) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case recs := <-d.queue:
			for i := range recs {
				ev := detectEvent(&recs[i].Event)
				if ev == nil {
					continue
				}
				for _, det := range d.det.Observe(ev) {
					d.act(ctx, det)
				}
			}
		}
	}
}

// detectEvent is the slice of an audit event the rules read; nil for
// events that are not requests.
func detectEvent(e *audit.Event) *detect.Event {
	if e.EventType != "ApiRequest" {
		return nil
	}
	ev := &detect.Event{
		Time: e.Time, RequestID: e.RequestID, Status: e.Status, Decision: e.Decision, Reason: e.ResultDetails,
		SrcIP: e.SrcIP, Identity: e.Identity, Tenant: e.Tenant, AppID: e.AppID,
		Country: e.SrcCountry, Lat: e.SrcLat, Lon: e.SrcLon, HasGeo: e.SrcLat != 0 || e.SrcLon != 0,
	}
	if e.IdentityType == "api_key" {
		ev.APIKey = e.Subject
	}
	return ev
}

func (d *detection) act(ctx context.Context, det detect.Detection) {
	d.fired.WithLabelValues(det.Rule, det.Action).Inc()
	d.logger.Warn("DETECTION "+det.Summary, "rule", det.Rule, "kind", det.Kind, "severity", det.Severity, "action", det.Action, det.KeyType, det.Key, "evidence", det.Evidence)
	identity := ""
	if det.KeyType == detect.KeyIdentity || det.KeyType == detect.KeyAPIKey {
		identity = det.Key
	}
	summary := det.Summary
	switch det.Action {
	case detect.ActionBlock:
		until := det.Time.Add(det.For)
		if until.Before(d.now()) {
			break // a replayed old event: the block would already be over
		}
		b := detect.Block{Kind: det.KeyType, Key: det.Key, Until: until, Rule: det.Rule, Reason: det.Summary, Node: d.node, At: d.now().UTC()}
		if err := d.state.Add(ctx, b); err != nil {
			d.logger.Error("block not applied", "rule", det.Rule, det.KeyType, det.Key, "error", err)
			summary += "; the block could not be applied: " + err.Error()
			break
		}
		summary += fmt.Sprintf("; %s %s blocked until %s", det.KeyType, det.Key, until.UTC().Format(time.RFC3339))
		d.audit(ctx, "blocked", b, "detector:"+det.Rule)
	case detect.ActionStepUp:
		until := det.Time.Add(det.For)
		if err := d.state.StepUp(ctx, det.Key, det.Rule, until); err != nil {
			d.logger.Error("risk not raised", "rule", det.Rule, "identity", det.Key, "error", err)
			break
		}
		summary += fmt.Sprintf("; risk raised to high until %s", until.UTC().Format(time.RFC3339))
	}
	// The detection joins the audit chain (tamper-evident, and exported
	// like every event: SIEM, webhook, syslog).
	if d.record != nil {
		if err := d.record(ctx, detectionEvent(det, summary, d.now())); err != nil {
			d.logger.Error("detection not audited", "rule", det.Rule, "error", err)
		}
	}
	if d.alerts == nil {
		return
	}
	a := alert.Alert{Time: det.Time.UTC(), Severity: det.Severity, Rule: det.Rule, Summary: summary, Identity: identity, Evidence: det.Evidence, Node: d.node}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := d.alerts.AddAlert(actx, a); err != nil {
		d.logger.Error("detection alert not stored", "rule", det.Rule, "error", err)
	}
}

// audit records a block or a lift as an admin event in the audit chain.
func (d *detection) audit(ctx context.Context, what string, b detect.Block, by string) {
	if d == nil || d.record == nil {
		return
	}
	if err := d.record(ctx, blockEvent(what, b, by, d.now())); err != nil {
		d.logger.Error("block change not audited", "what", what, b.Kind, b.Key, "error", err)
	}
}

// detectionEvent is a detection on the audit record: EventType Alert, the
// rule in result details, its evidence (request ids) in reasons.
func detectionEvent(det detect.Detection, summary string, now time.Time) audit.Event {
	ev := audit.Event{
		Time: now.UTC(), EventType: "Alert", RequestID: newEventID("det"), Result: "Failure", ResultDetails: det.Rule,
		Decision: det.Action, Reasons: det.Evidence, Method: "DETECT", URL: "detection/" + det.Kind + "/" + det.KeyType + "/" + det.Key,
		Message: det.Severity + ": " + summary,
	}
	switch det.KeyType {
	case detect.KeyIP:
		ev.SrcIP = det.Key
	case detect.KeyIdentity, detect.KeyAPIKey:
		ev.Identity = det.Key
	case detect.KeyTenant:
		ev.Tenant = det.Key
	}
	return ev
}

func blockEvent(what string, b detect.Block, by string, now time.Time) audit.Event {
	ev := audit.Event{
		Time: now.UTC(), EventType: "Admin", RequestID: newEventID("blk"), Result: "Success", ResultDetails: what,
		Decision: "allow", IdentityType: "admin", Identity: by, Method: "DETECT", URL: "block/" + b.Kind + "/" + b.Key,
		Reasons: []string{b.Rule}, Status: 200,
	}
	if b.Kind == detect.KeyIP {
		ev.SrcIP = b.Key
	}
	return ev
}

func newEventID(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// blocksAPI serves the admin API's blocks: lifting one is audited.
type blocksAPI struct {
	state *detect.State
	rec   func(ctx context.Context, ev audit.Event) error
	now   func() time.Time
}

func (b *blocksAPI) List() []detect.Block { return b.state.List() }

func (b *blocksAPI) Lift(ctx context.Context, kind, key, by string) (bool, error) {
	var lifted detect.Block
	for _, x := range b.state.List() {
		if x.Kind == kind && x.Key == key {
			lifted = x
		}
	}
	had, err := b.state.Lift(ctx, kind, key)
	if err != nil || !had {
		return had, err
	}
	if lifted.Kind == "" {
		lifted = detect.Block{Kind: kind, Key: key}
	}
	if b.rec != nil {
		if err := b.rec(ctx, blockEvent("block_lifted", lifted, by, b.now())); err != nil {
			return true, fmt.Errorf("lifted, but not audited: %w", err)
		}
	}
	return true, nil
}
