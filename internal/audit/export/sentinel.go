package export

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/monitor/ingestion/azlogs"

	"github.com/ztgate/ztgate/internal/audit"
	"github.com/ztgate/ztgate/internal/config"
)

// maxIngestionBody keeps each Logs Ingestion call under the API's 1 MB
// limit, counted on the uncompressed JSON so the bound holds whatever gzip
// achieves.
const maxIngestionBody = 1_000_000 - 1024

// asimRecord is an audit event in Microsoft Sentinel's ASIM WebSession
// schema (EventType ApiRequest), the columns a DCR stream for ztgate
// declares. Field names are the ASIM column names.
type asimRecord struct {
	TimeGenerated              time.Time      `json:"TimeGenerated"`
	EventStartTime             time.Time      `json:"EventStartTime"`
	EventEndTime               time.Time      `json:"EventEndTime"`
	EventCount                 int            `json:"EventCount"`
	EventType                  string         `json:"EventType"`
	EventResult                string         `json:"EventResult"`
	EventResultDetails         string         `json:"EventResultDetails"`
	EventOriginalResultDetails string         `json:"EventOriginalResultDetails,omitempty"`
	EventSeverity              string         `json:"EventSeverity"`
	EventOriginalUid           string         `json:"EventOriginalUid"`
	EventUid                   string         `json:"EventUid"`
	EventProduct               string         `json:"EventProduct"`
	EventVendor                string         `json:"EventVendor"`
	EventProductVersion        string         `json:"EventProductVersion,omitempty"`
	EventSchema                string         `json:"EventSchema"`
	EventSchemaVersion         string         `json:"EventSchemaVersion"`
	DvcAction                  string         `json:"DvcAction"`
	DvcHostname                string         `json:"DvcHostname"`
	RuleName                   string         `json:"RuleName,omitempty"`
	DstAppName                 string         `json:"DstAppName,omitempty"`
	Url                        string         `json:"Url"`
	HttpRequestMethod          string         `json:"HttpRequestMethod"`
	HttpStatusCode             int            `json:"HttpStatusCode"`
	HttpUserAgent              string         `json:"HttpUserAgent,omitempty"`
	SrcIpAddr                  string         `json:"SrcIpAddr"`
	SrcBytes                   int64          `json:"SrcBytes"`
	SrcUsername                string         `json:"SrcUsername,omitempty"`
	SrcUsernameType            string         `json:"SrcUsernameType,omitempty"`
	SrcUserId                  string         `json:"SrcUserId,omitempty"`
	SrcUserIdType              string         `json:"SrcUserIdType,omitempty"`
	SrcAppId                   string         `json:"SrcAppId,omitempty"`
	NetworkDuration            int64          `json:"NetworkDuration"`
	AdditionalFields           map[string]any `json:"AdditionalFields"`
}

// ASIM severities and actions by decision.
var (
	asimSeverity = map[string]string{"allow": "Informational", "preflight": "Informational", "would_deny": "Low", "deny": "Medium", "error": "Medium"}
	asimAction   = map[string]string{"allow": "Allow", "preflight": "Allow", "would_deny": "Allow", "deny": "Deny", "error": "Deny"}
)

// truncate keeps at most n bytes of s, so that one record always fits in
// an ingestion call.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// toASIM maps a record to an ASIM WebSession row.
func toASIM(r *audit.Record, version string) asimRecord {
	e := &r.Event
	sev := asimSeverity[e.Decision]
	if sev == "" {
		sev = "Medium"
	}
	act := asimAction[e.Decision]
	if act == "" {
		act = "Deny"
	}
	dur := time.Duration(e.DurationMS * float64(time.Millisecond))
	a := asimRecord{
		TimeGenerated: e.Time.UTC(), EventStartTime: e.Time.UTC(), EventEndTime: e.Time.Add(dur).UTC(), EventCount: 1,
		EventType: e.EventType, EventResult: e.Result, EventResultDetails: strconv.Itoa(e.Status),
		EventOriginalResultDetails: e.ResultDetails, EventSeverity: sev,
		EventOriginalUid: e.RequestID, EventUid: r.Node + ":" + strconv.FormatInt(r.Seq, 10),
		EventProduct: "ztgate", EventVendor: "ztgate", EventProductVersion: version,
		EventSchema: "WebSession", EventSchemaVersion: "0.2.7",
		DvcAction: act, DvcHostname: e.Node, RuleName: e.Route, DstAppName: e.Service,
		Url: truncate(e.URL, 32<<10), HttpRequestMethod: e.Method, HttpStatusCode: e.Status,
		HttpUserAgent: truncate(e.UserAgent, 4<<10), SrcIpAddr: e.SrcIP, SrcBytes: e.RequestBytes,
		SrcAppId: e.AppID, NetworkDuration: dur.Milliseconds(),
		AdditionalFields: map[string]any{
			"Decision": e.Decision, "PolicyVersion": e.PolicyVersion, "IdentityType": e.IdentityType,
			"Tenant": e.Tenant, "Subject": e.Subject, "AuditSeq": r.Seq, "AuditHash": r.Hash,
		},
	}
	if a.EventType == "" {
		a.EventType = "ApiRequest"
	}
	if len(e.Reasons) > 0 {
		a.AdditionalFields["Reasons"] = e.Reasons
	}
	if len(e.DLP) > 0 {
		a.AdditionalFields["Dlp"] = e.DLP // matches per detector, never values
	}
	if e.DLPOverLimit {
		a.AdditionalFields["DlpOverLimit"] = true
		a.AdditionalFields["DlpUnscannedBytes"] = e.DLPUnscannedBytes
	}
	if e.Identity != "" {
		a.SrcUsername, a.SrcUsernameType = truncate(e.Identity, 1024), "Simple"
	}
	if e.ObjectID != "" {
		a.SrcUserId, a.SrcUserIdType = e.ObjectID, "AADID"
	}
	return a
}

// uploader is the Logs Ingestion call; *azlogs.Client has it.
type uploader interface {
	Upload(ctx context.Context, ruleID, streamName string, logs []byte, options *azlogs.UploadOptions) (azlogs.UploadResponse, error)
}

// sentinelSender uploads ASIM rows to a data collection rule's stream
// through the Azure Monitor Logs Ingestion API: gzip bodies, each under
// 1 MB uncompressed.
type sentinelSender struct {
	client  uploader
	dcr     string
	stream  string
	version string
	maxBody int
}

var _ Sender = (*sentinelSender)(nil)

// newSentinel builds the token credential (client secret or managed
// identity, from azidentity) and the ingestion client (azlogs, whose own
// retries are off: the worker retries, honouring Retry-After).
func newSentinel(c config.Exporter, hc *http.Client, version string) (*sentinelSender, error) {
	authority := c.AuthorityHost
	if authority == "" {
		authority = cloud.AzurePublic.ActiveDirectoryAuthorityHost
	}
	cc := cloud.Configuration{
		ActiveDirectoryAuthorityHost: authority,
		Services:                     map[cloud.ServiceName]cloud.ServiceConfiguration{azlogs.ServiceNameIngestion: {Audience: c.Audience}},
	}
	opts := azcore.ClientOptions{Cloud: cc, Transport: hc}
	var cred azcore.TokenCredential
	var err error
	switch c.Auth {
	case "client_secret":
		cred, err = azidentity.NewClientSecretCredential(c.TenantID, c.ClientID, c.ClientSecret.Reveal(), &azidentity.ClientSecretCredentialOptions{
			ClientOptions: opts,
			// A sign-in host other than the well-known clouds' (a private
			// cloud, a test) is not in Entra's instance metadata.
			DisableInstanceDiscovery: !knownAuthority(authority),
		})
	case "managed_identity":
		mo := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: opts}
		if c.ClientID != "" {
			mo.ID = azidentity.ClientID(c.ClientID)
		}
		cred, err = azidentity.NewManagedIdentityCredential(mo)
	default:
		err = fmt.Errorf("unknown auth %q", c.Auth)
	}
	if err != nil {
		return nil, fmt.Errorf("sentinel credential: %w", err)
	}
	lo := opts
	lo.Retry = policy.RetryOptions{MaxRetries: -1}
	client, err := azlogs.NewClient(c.Endpoint, cred, &azlogs.ClientOptions{ClientOptions: lo})
	if err != nil {
		return nil, fmt.Errorf("sentinel client: %w", err)
	}
	return &sentinelSender{client: client, dcr: c.DCRID, stream: c.Stream, version: version, maxBody: maxIngestionBody}, nil
}

func knownAuthority(host string) bool {
	for _, c := range []cloud.Configuration{cloud.AzurePublic, cloud.AzureGovernment, cloud.AzureChina} {
		if host == c.ActiveDirectoryAuthorityHost || host+"/" == c.ActiveDirectoryAuthorityHost {
			return true
		}
	}
	return false
}

func (s *sentinelSender) Send(ctx context.Context, recs []audit.Record) error {
	sent := 0
	gzipped := &azlogs.UploadOptions{ContentEncoding: ptr("gzip")}
	for sent < len(recs) {
		n, body, err := s.chunk(recs[sent:])
		if err != nil {
			return &Partial{Sent: sent, Err: Permanent(err)}
		}
		gz, err := gzipBytes(body)
		if err != nil {
			return &Partial{Sent: sent, Err: err}
		}
		if _, err := s.client.Upload(ctx, s.dcr, s.stream, gz, gzipped); err != nil {
			return &Partial{Sent: sent, Err: classifyAzure(err)}
		}
		sent += n
	}
	return nil
}

// chunk encodes the longest prefix of recs whose JSON array stays under
// maxBody bytes.
func (s *sentinelSender) chunk(recs []audit.Record) (int, []byte, error) {
	buf := bytes.NewBuffer(make([]byte, 0, 64<<10))
	buf.WriteByte('[')
	n := 0
	for i := range recs {
		row, err := json.Marshal(toASIM(&recs[i], s.version))
		if err != nil {
			return 0, nil, err
		}
		if buf.Len()+len(row)+2 > s.maxBody {
			if n == 0 {
				return 0, nil, fmt.Errorf("record %d is larger than an ingestion call allows", recs[i].Seq)
			}
			break
		}
		if n > 0 {
			buf.WriteByte(',')
		}
		buf.Write(row)
		n++
	}
	buf.WriteByte(']')
	return n, buf.Bytes(), nil
}

func gzipBytes(b []byte) ([]byte, error) {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// classifyAzure turns an azcore response error into the worker's terms
// (Retry-After, permanent); token and network failures are retried.
func classifyAzure(err error) error {
	var re *azcore.ResponseError
	if errors.As(err, &re) && re.RawResponse != nil {
		return statusError(re.StatusCode, re.RawResponse.Header, []byte(re.ErrorCode))
	}
	return err
}

func (s *sentinelSender) Close() error { return nil }

func ptr[T any](v T) *T { return &v }
