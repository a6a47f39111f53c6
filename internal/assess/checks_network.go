package assess

import (
	"fmt"
	"strings"
	"time"

	"github.com/ztgate/ztgate/internal/config"
)

var networkChecks = []check{
	{"NW-01", "Clients connect over TLS", Networks, "Traffic Encryption", Initial, checkListenTLS},
	{"NW-02", "Every route is rate limited", Networks, "Network Traffic Management", Initial, checkRateLimits},
	{"NW-03", "Upstreams are reached over TLS", Networks, "Traffic Encryption", Advanced, checkUpstreamTLS},
	{"NW-04", "No certificate expires within 30 days", Networks, "Network Resilience", Advanced, checkCertExpiry},
	{"NW-05", "Segmentation: one upstream per service, no catch-all routes", Networks, "Network Segmentation", Advanced, checkSegmentation},
	{"NW-06", "Upstreams authenticate the gateway (mTLS)", Networks, "Traffic Encryption", Optimal, checkUpstreamMTLS},
}

func checkListenTLS(in *Inputs) Result {
	addr := in.Cfg.Listen.Address
	if in.Cfg.Listen.TLS != nil {
		return Result{Outcome: Pass, Summary: "The listener speaks TLS.", Evidence: []Evidence{{Where: in.loc("listen.tls"), Text: "listen.tls.cert_file: " + in.Cfg.Listen.TLS.CertFile}}}
	}
	next := &NextStep{Text: "Terminate TLS at the gateway (its certificate reloads when the files change).", YAML: "listen:\n  address: \"" + addr + "\"\n  tls: { cert_file: gw.pem, key_file: gw.key }\n"}
	if loopback(addr) {
		return Result{Outcome: Partial, Summary: "The listener speaks plain HTTP on a loopback address: only safe behind a TLS-terminating proxy on the same host.",
			Evidence: []Evidence{{Where: in.loc("listen.address"), Text: "listen.address: " + addr + ", no listen.tls"}}, Next: next}
	}
	return Result{Outcome: Fail, Summary: "The listener speaks plain HTTP: tokens cross the network in clear unless a load balancer in front terminates TLS.",
		Evidence: []Evidence{{Where: in.loc("listen.address"), Text: "listen.address: " + addr + ", no listen.tls"}}, Next: next}
}

func checkRateLimits(in *Inputs) Result {
	gateway := in.Cfg.Limits.RateLimit != nil
	var lacking []*Route
	for i := range in.Routes {
		r := &in.Routes[i]
		if r.Open() && !gateway && r.Route.RateLimit == nil && r.Service.RateLimit == nil {
			lacking = append(lacking, r)
		}
	}
	open := 0
	for _, r := range in.Routes {
		if r.Open() {
			open++
		}
	}
	res := Result{Outcome: share(open-len(lacking), open), Measure: &Measure{Num: open - len(lacking), Den: open, Of: "open routes with a rate limit (route, service or gateway)"}}
	switch res.Outcome {
	case NotApplicable:
		res.Measure = nil
		res.Summary = "No route is open to anyone."
		return res
	case Pass:
		res.Summary = "Every open route counts against a rate limit."
		if gateway {
			res.Evidence = append(res.Evidence, Evidence{Where: in.loc("limits.rate_limit"), Text: "a gateway-wide limit applies to every route"})
		}
	default:
		res.Summary = fmt.Sprintf("%d of %d open routes %s no rate limit.", len(lacking), open, verb(len(lacking), "has", "have"))
	}
	for _, r := range lacking {
		res.Evidence = append(res.Evidence, Evidence{Where: in.loc(r.Path), Text: r.Name + ": no rate_limit on the route, its service or the gateway"})
	}
	if len(lacking) > 0 {
		res.Next = &NextStep{Text: "Limit every caller: a gateway-wide limit, and tighter ones on expensive routes.", YAML: "limits:\n  rate_limit: { key: identity, limit: 600, per: 1m }\n" + routeSnippet(lacking[0], "rate_limit: { key: identity, limit: 100, per: 1m }")}
	}
	return res
}

// remote lists the services whose upstream is not on this host.
func remote(cfg *config.Config) []int {
	var out []int
	for i := range cfg.Services {
		if !loopback(upstreamURL(&cfg.Services[i]).Host) {
			out = append(out, i)
		}
	}
	return out
}

func checkUpstreamTLS(in *Inputs) Result {
	svcs := remote(in.Cfg)
	var plain []int
	for _, i := range svcs {
		if upstreamURL(&in.Cfg.Services[i]).Scheme != "https" {
			plain = append(plain, i)
		}
	}
	res := Result{Outcome: share(len(svcs)-len(plain), len(svcs)), Measure: &Measure{Num: len(svcs) - len(plain), Den: len(svcs), Of: "services on other hosts reached over https"}}
	switch res.Outcome {
	case NotApplicable:
		res.Measure = nil
		res.Summary = "Every upstream is on this host (loopback); nothing crosses the network."
		if len(in.Cfg.Services) == 0 {
			res.Summary = "No services are configured."
		}
		return res
	case Pass:
		res.Summary = "Every upstream on another host is reached over TLS."
	default:
		res.Summary = fmt.Sprintf("%d of %d services on other hosts %s reached over plain HTTP.", len(plain), len(svcs), verb(len(plain), "is", "are"))
	}
	for _, i := range plain {
		s := &in.Cfg.Services[i]
		res.Evidence = append(res.Evidence, Evidence{Where: in.loc(fmt.Sprintf("services[%d].upstream", i)), Text: s.Name + ": " + s.Upstream})
	}
	if len(plain) > 0 {
		s := &in.Cfg.Services[plain[0]]
		u := upstreamURL(s)
		u.Scheme = "https"
		res.Next = &NextStep{Text: "Serve the upstream over TLS and trust its CA.", YAML: serviceSnippet(s, "upstream: "+u.String(), "upstream_tls: { ca_file: internal-ca.pem }")}
	}
	return res
}

func checkUpstreamMTLS(in *Inputs) Result {
	svcs := remote(in.Cfg)
	var without []int
	for _, i := range svcs {
		s := &in.Cfg.Services[i]
		if upstreamURL(s).Scheme != "https" || s.UpstreamTLS == nil || s.UpstreamTLS.CertFile == "" {
			without = append(without, i)
		}
	}
	res := Result{Outcome: share(len(svcs)-len(without), len(svcs)), Measure: &Measure{Num: len(svcs) - len(without), Den: len(svcs), Of: "services on other hosts where the gateway presents a client certificate"}}
	switch res.Outcome {
	case NotApplicable:
		res.Measure = nil
		res.Summary = "Every upstream is on this host (loopback); nothing crosses the network."
		if len(in.Cfg.Services) == 0 {
			res.Summary = "No services are configured."
		}
		return res
	case Pass:
		res.Summary = "Every upstream on another host can tell the gateway from anyone else: it presents a client certificate."
	default:
		res.Summary = fmt.Sprintf("%d of %d services on other hosts %s the gateway without a client certificate.", len(without), len(svcs), verb(len(without), "accepts", "accept"))
	}
	for _, i := range without {
		s := &in.Cfg.Services[i]
		res.Evidence = append(res.Evidence, Evidence{Where: in.loc(fmt.Sprintf("services[%d]", i)), Text: s.Name + ": no upstream_tls.cert_file"})
	}
	if len(without) > 0 {
		s := &in.Cfg.Services[without[0]]
		res.Next = &NextStep{Text: "Give the gateway a client certificate and have the upstream accept only it.", YAML: serviceSnippet(s, "upstream_tls: { ca_file: internal-ca.pem, cert_file: gw-client.pem, key_file: gw-client.key }")}
	}
	return res
}

// ExpiryWarning is how far ahead an expiring certificate is reported.
const ExpiryWarning = 30 * 24 * time.Hour

func checkCertExpiry(in *Inputs) Result {
	if len(in.Certs) == 0 {
		return Result{Outcome: NotApplicable, Summary: "The configuration names no certificate files."}
	}
	var expiring, unreadable int
	res := Result{}
	for _, c := range in.Certs {
		where := in.loc(c.Path)
		switch {
		case c.Err != "":
			unreadable++
			res.Evidence = append(res.Evidence, Evidence{Where: where, Text: fmt.Sprintf("%s (%s): %s", c.File, c.Path, c.Err)})
		case !c.NotAfter.After(in.Now):
			expiring++
			res.Evidence = append(res.Evidence, Evidence{Where: where, Text: fmt.Sprintf("%s (%s): EXPIRED on %s (%s)", c.File, c.Path, c.NotAfter.Format(time.DateOnly), c.Subject)})
		case c.NotAfter.Sub(in.Now) <= ExpiryWarning:
			expiring++
			res.Evidence = append(res.Evidence, Evidence{Where: where, Text: fmt.Sprintf("%s (%s): expires on %s, in %d days (%s)", c.File, c.Path, c.NotAfter.Format(time.DateOnly), int(c.NotAfter.Sub(in.Now).Hours()/24), c.Subject)})
		default:
			res.Evidence = append(res.Evidence, Evidence{Where: where, Text: fmt.Sprintf("%s (%s): valid until %s", c.File, c.Path, c.NotAfter.Format(time.DateOnly))})
		}
	}
	switch {
	case expiring > 0:
		res.Outcome = Fail
		res.Summary = fmt.Sprintf("%s a certificate that has expired or expires within 30 days.", plural(expiring, "file holds", "files hold"))
		res.Next = &NextStep{Text: "Renew them now and automate renewal (ACME or your PKI's agent): ztgate reloads the listener's certificate when its files change, without a restart."}
	case unreadable > 0:
		res.Outcome = Unknown
		res.Summary = fmt.Sprintf("%s could not be read here; run the assessment where the gateway runs.", plural(unreadable, "certificate file", "certificate files"))
	default:
		res.Outcome = Pass
		res.Summary = fmt.Sprintf("%s valid for more than 30 days.", allOf(len(in.Certs), "certificate file is", "certificate files are"))
	}
	return res
}

func checkSegmentation(in *Inputs) Result {
	if len(in.Cfg.Services) == 0 {
		return Result{Outcome: NotApplicable, Summary: "No services are configured."}
	}
	res := Result{Outcome: Pass}
	byHost := map[string][]string{}
	var hosts []string
	for _, s := range in.Cfg.Services {
		h := upstreamURL(&s).Host
		if byHost[h] == nil {
			hosts = append(hosts, h)
		}
		byHost[h] = append(byHost[h], s.Name)
	}
	for _, h := range hosts {
		if names := byHost[h]; len(names) > 1 {
			res.Outcome = Partial
			res.Evidence = append(res.Evidence, Evidence{Text: fmt.Sprintf("upstream %s is shared by services %s", h, strings.Join(names, ", "))})
		}
	}
	for _, r := range in.Routes {
		catchAll := r.Route.Match.Path == "/**" && len(r.Route.Match.Methods) == 0 && r.Route.Match.Host == "" && len(r.Service.Hosts) == 0
		if catchAll && r.Open() {
			res.Outcome = Partial
			res.Evidence = append(res.Evidence, Evidence{Where: in.loc(r.Path), Text: r.Name + ": matches every method and path on every host"})
		}
	}
	if res.Outcome == Pass {
		res.Summary = fmt.Sprintf("%s own upstream, and no open route matches everything.", allOf(len(in.Cfg.Services), "service has its", "services have their"))
		return res
	}
	res.Summary = "Services share upstreams or routes match everything: one route's callers reach more than they need."
	res.Next = &NextStep{Text: "Give each backend its own service and narrow catch-all routes to the methods and paths they serve.", YAML: "services:\n  - name: <service>\n    routes:\n      - name: read\n        match: { methods: [GET], path: \"/orders/**\" }\n"}
	return res
}
