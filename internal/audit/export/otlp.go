package export

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/ztgate/ztgate/internal/audit"
)

// otlpSender posts records as OpenTelemetry log records to an OTLP/HTTP
// logs endpoint, in OTLP's JSON encoding (ExportLogsServiceRequest).
type otlpSender struct {
	client  *http.Client
	url     string
	header  http.Header
	node    string
	version string
}

var _ Sender = (*otlpSender)(nil)

// The OTLP JSON encoding: int64 values are strings, enums are numbers,
// field names are lowerCamelCase.
type (
	otlpRequest struct {
		ResourceLogs []otlpResourceLogs `json:"resourceLogs"`
	}
	otlpResourceLogs struct {
		Resource  otlpResource    `json:"resource"`
		ScopeLogs []otlpScopeLogs `json:"scopeLogs"`
	}
	otlpResource struct {
		Attributes []otlpKV `json:"attributes"`
	}
	otlpScopeLogs struct {
		Scope      otlpScope       `json:"scope"`
		LogRecords []otlpLogRecord `json:"logRecords"`
	}
	otlpScope struct {
		Name    string `json:"name"`
		Version string `json:"version,omitempty"`
	}
	otlpLogRecord struct {
		TimeUnixNano         string    `json:"timeUnixNano"`
		ObservedTimeUnixNano string    `json:"observedTimeUnixNano"`
		SeverityNumber       int       `json:"severityNumber"`
		SeverityText         string    `json:"severityText"`
		EventName            string    `json:"eventName"`
		Body                 otlpValue `json:"body"`
		Attributes           []otlpKV  `json:"attributes"`
	}
	otlpKV struct {
		Key   string    `json:"key"`
		Value otlpValue `json:"value"`
	}
	otlpValue struct {
		StringValue *string       `json:"stringValue,omitempty"`
		IntValue    *string       `json:"intValue,omitempty"`
		DoubleValue *float64      `json:"doubleValue,omitempty"`
		ArrayValue  *otlpArrayVal `json:"arrayValue,omitempty"`
	}
	otlpArrayVal struct {
		Values []otlpValue `json:"values"`
	}
)

func strV(s string) otlpValue     { return otlpValue{StringValue: &s} }
func intV(i int64) otlpValue      { s := strconv.FormatInt(i, 10); return otlpValue{IntValue: &s} }
func doubleV(f float64) otlpValue { return otlpValue{DoubleValue: &f} }

// OTLP severity numbers (INFO, INFO2, WARN, ERROR) by decision.
func otlpSeverity(decision string) (int, string) {
	switch decision {
	case "allow", "preflight":
		return 9, "INFO"
	case "would_deny":
		return 10, "INFO2"
	case "deny":
		return 13, "WARN"
	default:
		return 17, "ERROR"
	}
}

// otlpRecord maps a record to a log record whose attributes follow the
// OpenTelemetry semantic conventions (http.*, url.*, client.*, user_agent.*)
// and carry the rest under ztgate.*; the body is the event as hashed.
func otlpRecord(r *audit.Record, observed int64) otlpLogRecord {
	e := &r.Event
	num, text := otlpSeverity(e.Decision)
	body := r.Body
	if body == "" {
		b, _ := audit.Canonical(e)
		body = string(b)
	}
	path, query, _ := strings.Cut(e.URL, "?")
	attrs := []otlpKV{
		{"http.request.method", strV(e.Method)},
		{"url.path", strV(path)},
		{"http.response.status_code", intV(int64(e.Status))},
		{"client.address", strV(e.SrcIP)},
		{"ztgate.request_id", strV(e.RequestID)},
		{"ztgate.decision", strV(e.Decision)},
		{"ztgate.result", strV(e.Result)},
		{"ztgate.result_details", strV(e.ResultDetails)},
		{"ztgate.policy_version", strV(e.PolicyVersion)},
		{"ztgate.audit.node", strV(r.Node)},
		{"ztgate.audit.seq", intV(r.Seq)},
		{"ztgate.audit.hash", strV(r.Hash)},
		{"ztgate.request_bytes", intV(e.RequestBytes)},
		{"ztgate.duration_ms", doubleV(e.DurationMS)},
	}
	for _, kv := range []struct{ k, v string }{
		{"url.query", query}, {"user_agent.original", e.UserAgent}, {"ztgate.service", e.Service}, {"ztgate.route", e.Route},
		{"ztgate.identity", e.Identity}, {"ztgate.identity_type", e.IdentityType}, {"ztgate.tenant", e.Tenant},
		{"ztgate.object_id", e.ObjectID}, {"ztgate.subject", e.Subject}, {"ztgate.app_id", e.AppID},
	} {
		if kv.v != "" {
			attrs = append(attrs, otlpKV{kv.k, strV(kv.v)})
		}
	}
	if len(e.Reasons) > 0 {
		vals := make([]otlpValue, len(e.Reasons))
		for i, s := range e.Reasons {
			vals[i] = strV(s)
		}
		attrs = append(attrs, otlpKV{"ztgate.reasons", otlpValue{ArrayValue: &otlpArrayVal{vals}}})
	}
	return otlpLogRecord{
		TimeUnixNano:         strconv.FormatInt(e.Time.UnixNano(), 10),
		ObservedTimeUnixNano: strconv.FormatInt(observed, 10),
		SeverityNumber:       num, SeverityText: text,
		EventName:  "ztgate.api_request",
		Body:       strV(body),
		Attributes: attrs,
	}
}

func (s *otlpSender) payload(recs []audit.Record, observed int64) ([]byte, error) {
	logs := make([]otlpLogRecord, len(recs))
	for i := range recs {
		logs[i] = otlpRecord(&recs[i], observed)
	}
	req := otlpRequest{ResourceLogs: []otlpResourceLogs{{
		Resource: otlpResource{Attributes: []otlpKV{
			{"service.name", strV("ztgate")},
			{"service.version", strV(s.version)},
			{"host.name", strV(s.node)},
		}},
		ScopeLogs: []otlpScopeLogs{{Scope: otlpScope{Name: "ztgate.audit", Version: s.version}, LogRecords: logs}},
	}}}
	return json.Marshal(req)
}

func (s *otlpSender) Send(ctx context.Context, recs []audit.Record) error {
	body, err := s.payload(recs, nowNano())
	if err != nil {
		return Permanent(err)
	}
	h := s.header.Clone()
	h.Set("Content-Type", "application/json")
	return post(ctx, s.client, s.url, h, body)
}

func (s *otlpSender) Close() error {
	s.client.CloseIdleConnections()
	return nil
}
