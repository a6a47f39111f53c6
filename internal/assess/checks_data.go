package assess

import (
	"fmt"
	"reflect"
	"slices"
)

var dataChecks = []check{
	{"DA-01", "No secrets written in the configuration", Data, "Data Access", Initial, checkInlineSecrets},
	{"DA-02", "Data is encrypted in transit on both legs", Data, "Data Encryption", Initial, checkTransit},
	{"DA-03", "Secrets come from a vault", Data, "Data Access", Advanced, checkVault},
	{"DA-04", "The data a caller can take is bounded", Data, "Data Access", Advanced, checkDataVolume},
	{"DA-05", "Personal data is masked in responses (DLP)", Data, "Data Categorization", Advanced, checkDLP},
}

func secretsUnknown(in *Inputs) *Result {
	if in.SecretsErr != "" {
		return &Result{Outcome: Unknown, Summary: "The configuration file could not be read for secret references: " + in.SecretsErr}
	}
	if len(in.Secrets) == 0 {
		return &Result{Outcome: NotApplicable, Summary: "The configuration holds no secret-bearing values (keys, passwords, credential headers)."}
	}
	return nil
}

func checkInlineSecrets(in *Inputs) Result {
	if r := secretsUnknown(in); r != nil {
		return *r
	}
	res := Result{Outcome: Pass}
	var inline []SecretValue
	for _, s := range in.Secrets {
		if s.Source == "inline" {
			inline = append(inline, s)
			res.Evidence = append(res.Evidence, Evidence{Where: fmt.Sprintf("%s:%d", in.File, s.Line), Text: s.Path + ": written inline (value not shown)"})
		}
	}
	res.Measure = &Measure{Num: len(in.Secrets) - len(inline), Den: len(in.Secrets), Of: "secret-bearing values given by reference"}
	if len(inline) == 0 {
		res.Summary = fmt.Sprintf("%s given by reference (${secret:...} or ${env:...}), not written in the file.", allOf(len(in.Secrets), "secret-bearing value is", "secret-bearing values are"))
		return res
	}
	res.Outcome = Fail
	res.Summary = fmt.Sprintf("%s written into the file: anyone who reads the file or its history has %s.", plural(len(inline), "secret is", "secrets are"), verb(len(inline), "it", "them"))
	res.Next = &NextStep{Text: "Move each into a secret store and reference it; then rotate it, since the old value is in the file's history.", YAML: "secrets:\n  providers:\n    - { name: kv, type: azure_keyvault, vault_url: \"https://<vault>.vault.azure.net/\" }\n# and in place of the value:\n" + inline[0].Path + ": \"${secret:kv/<name>}\"\n"}
	return res
}

func checkVault(in *Inputs) Result {
	if r := secretsUnknown(in); r != nil {
		return *r
	}
	vault := 0
	res := Result{}
	for _, s := range in.Secrets {
		where := fmt.Sprintf("%s:%d", in.File, s.Line)
		switch s.Source {
		case "vault":
			vault++
			res.Evidence = append(res.Evidence, Evidence{Where: where, Text: s.Path + ": from vault provider " + s.Provider})
		case "provider":
			res.Evidence = append(res.Evidence, Evidence{Where: where, Text: s.Path + ": from provider " + s.Provider + " (environment or files, not a vault)"})
		case "env":
			res.Evidence = append(res.Evidence, Evidence{Where: where, Text: s.Path + ": from an environment variable"})
		default:
			res.Evidence = append(res.Evidence, Evidence{Where: where, Text: s.Path + ": inline"})
		}
	}
	vaultYAML := "secrets:\n  providers:\n    - { name: kv, type: azure_keyvault, vault_url: \"https://<vault>.vault.azure.net/\" }\n"
	if in.Capability("secrets.providers.type=azure_keyvault") != Supported {
		res.Outcome = NotAvailable
		res.Summary = "Reading secrets from Azure Key Vault is not available in this version; a file provider over a vault-synced mount (the Key Vault CSI driver) is the closest."
		res.Next = &NextStep{Text: "When it lands: read secrets from Azure Key Vault with the gateway's managed identity.", YAML: vaultYAML}
		return res
	}
	res.Outcome = share(vault, len(in.Secrets))
	res.Measure = &Measure{Num: vault, Den: len(in.Secrets), Of: "secret-bearing values read from a vault"}
	switch res.Outcome {
	case Pass:
		res.Summary = "Every secret is read from a vault: access to it is itself audited and revocable."
	default:
		res.Summary = fmt.Sprintf("%d of %d secrets come from environment variables, files or the configuration itself rather than a vault.", len(in.Secrets)-vault, len(in.Secrets))
		res.Next = &NextStep{Text: "Read secrets from Azure Key Vault (the gateway authenticates with its managed identity).", YAML: vaultYAML}
	}
	return res
}

func checkDataVolume(in *Inputs) Result {
	var reads, lacking []*Route
	for i := range in.Routes {
		r := &in.Routes[i]
		if !r.Open() || !returnsData(r) {
			continue
		}
		reads = append(reads, r)
		q := r.Route.Quota
		if q == nil {
			q = r.Service.Quota
		}
		if q == nil || q.Bytes == 0 {
			lacking = append(lacking, r)
		}
	}
	res := Result{Outcome: share(len(reads)-len(lacking), len(reads)), Measure: &Measure{Num: len(reads) - len(lacking), Den: len(reads), Of: "open routes returning data with a response-bytes quota per caller"}}
	switch res.Outcome {
	case NotApplicable:
		res.Measure = nil
		res.Summary = "No open route returns data."
		return res
	case Pass:
		res.Summary = "Every open route that returns data bounds how much one caller can take per period."
	default:
		res.Summary = fmt.Sprintf("%d of %d open routes returning data %s a caller (or a stolen token) take any amount of it.", len(lacking), len(reads), verb(len(lacking), "lets", "let"))
	}
	for _, r := range lacking {
		res.Evidence = append(res.Evidence, Evidence{Where: in.loc(r.Path), Text: r.Name + ": no quota with bytes on the route or its service"})
	}
	if len(lacking) > 0 {
		res.Next = &NextStep{Text: "Set a daily response-bytes quota per caller well above normal use: bulk exfiltration then stops at the quota.", YAML: serviceSnippet(lacking[0].Service, "quota: { key: identity, bytes: 1073741824, period: day }")}
	}
	return res
}

func checkTransit(in *Inputs) Result {
	if len(in.Cfg.Services) == 0 {
		return Result{Outcome: NotApplicable, Summary: "No services are configured."}
	}
	client := in.Cfg.Listen.TLS != nil
	upstream := true
	for _, i := range remote(in.Cfg) {
		if upstreamURL(&in.Cfg.Services[i]).Scheme != "https" {
			upstream = false
		}
	}
	res := Result{Evidence: []Evidence{
		{Where: in.loc("listen"), Text: map[bool]string{true: "client leg: TLS", false: "client leg: plain HTTP"}[client]},
		{Text: map[bool]string{true: "upstream leg: TLS (or on this host)", false: "upstream leg: plain HTTP to some hosts (see NW-03)"}[upstream]},
	}}
	switch {
	case client && upstream:
		res.Outcome, res.Summary = Pass, "Requests and responses are encrypted from client to upstream."
	case client || upstream:
		res.Outcome, res.Summary = Partial, "One leg of the path carries data in clear."
	default:
		res.Outcome, res.Summary = Fail, "Neither leg is encrypted."
	}
	if res.Outcome.Blocks() {
		res.Next = &NextStep{Text: "Encrypt both legs (see NW-01 and NW-03).", YAML: "listen:\n  tls: { cert_file: gw.pem, key_file: gw.key }\nservices:\n  - name: <service>\n    upstream: https://<host>\n"}
	}
	return res
}

func checkDLP(in *Inputs) Result {
	if in.Capability("services.routes.dlp") != Supported {
		return Result{Outcome: NotAvailable, Summary: "Response masking (routes[].dlp) is not available in this version.",
			Next: &NextStep{Text: "When it lands: mask personal data on routes that return it.", YAML: "      - name: <route returning personal data>\n        dlp: { mask: [credit_card, email] }\n"}}
	}
	var reads, lacking []*Route
	for i := range in.Routes {
		r := &in.Routes[i]
		if !r.Open() || !returnsData(r) {
			continue
		}
		reads = append(reads, r)
		if v, ok := lookup(r.Route, "dlp"); !ok || !v.IsValid() || v.IsZero() || (v.Kind() == reflect.Pointer && v.IsNil()) {
			lacking = append(lacking, r)
		}
	}
	res := Result{Outcome: share(len(reads)-len(lacking), len(reads)), Measure: &Measure{Num: len(reads) - len(lacking), Den: len(reads), Of: "open routes returning data with masking"}}
	switch res.Outcome {
	case NotApplicable:
		res.Measure = nil
		res.Summary = "No open route returns data."
		return res
	case Pass:
		res.Summary = "Every open route that returns data masks personal data."
	default:
		res.Summary = fmt.Sprintf("%d of %d open routes %s data unmasked.", len(lacking), len(reads), verb(len(lacking), "returns", "return"))
	}
	for _, r := range lacking {
		res.Evidence = append(res.Evidence, Evidence{Where: in.loc(r.Path), Text: r.Name + ": no dlp"})
	}
	if len(lacking) > 0 {
		res.Next = &NextStep{Text: "Mask personal data on the routes that return it.", YAML: routeSnippet(lacking[0], "dlp: { mask: [credit_card, email] }")}
	}
	return res
}

// returnsData reports whether a route answers reads: GET, or any method.
func returnsData(r *Route) bool {
	m := r.Route.Match.Methods
	return len(m) == 0 || slices.Contains(m, "GET")
}
