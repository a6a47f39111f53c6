package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ztgate/ztgate/internal/explain"
	"github.com/ztgate/ztgate/internal/node"
)

func explainCmd() *cobra.Command {
	var (
		path, token, claims, ip, at string
		workload                    string
		hdrs                        []string
		offline, asJSON             bool
	)
	c := &cobra.Command{
		Use:   `explain --config FILE [--token TOKEN | --claims JSON] "METHOD URL"`,
		Short: "Explain why a request would be allowed or denied",
		Long: `Run a described request through the configuration's routes, authentication and policy,
and print every step: which route matched and why the others did not, each authentication
check, each policy criterion with the caller's value, and the decision.

A --token is verified against its provider's keys (fetched over the network) unless
--offline is given, which decodes it without checking signature or expiry. --claims
gives identity claims directly (JSON, or @file), for what-if questions. --workload stands for
a verified client certificate naming that workload (identity.mtls): alone it is the caller,
with a token or claims it rides along.`,
		Example: `  ztgate explain --config ztgate.yaml --token "$TOKEN" "GET https://api.example.com/orders/42"
  ztgate explain --config ztgate.yaml --claims '{"sub":"alice","roles":["Orders.Read"]}' --ip 10.1.2.3 "POST /orders/42"
  ztgate explain --config ztgate.yaml --workload spiffe://prod.example/ns/billing/sa/api "POST /sync/orders"`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			method, target := "GET", args[0]
			if len(args) == 2 {
				method, target = args[0], args[1]
			} else if m, u, ok := strings.Cut(args[0], " "); ok {
				method, target = m, strings.TrimSpace(u)
			}
			cfg, err := node.LoadConfig(path)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return exitError{1}
			}
			req := explain.Request{Method: method, URL: target, Token: token, IP: ip, Headers: map[string]string{}, Workload: workload}
			for _, h := range hdrs {
				k, v, ok := strings.Cut(h, ":")
				if !ok {
					return fmt.Errorf("bad --header %q: want Name:value", h)
				}
				req.Headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
			if claims != "" {
				raw := []byte(claims)
				if strings.HasPrefix(claims, "@") {
					if raw, err = os.ReadFile(claims[1:]); err != nil {
						return err
					}
				}
				if err := json.Unmarshal(raw, &req.Claims); err != nil {
					return fmt.Errorf("bad --claims: %w", err)
				}
			}
			if at != "" {
				if req.Time, err = time.Parse(time.RFC3339, at); err != nil {
					return fmt.Errorf("bad --time %q: want RFC 3339, e.g. 2026-11-22T09:00:00Z", at)
				}
			}
			res, err := explain.Explain(cmd.Context(), cfg, req, explain.Options{Offline: offline})
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			res.WriteText(cmd.OutOrStdout())
			return nil
		},
	}
	f := c.Flags()
	f.StringVarP(&path, "config", "c", "", "configuration file (YAML)")
	f.StringVar(&token, "token", "", "bearer token of the caller")
	f.StringVar(&claims, "claims", "", "identity claims as JSON (or @file) instead of a token")
	f.StringVar(&workload, "workload", "", "workload ID of a client certificate (spiffe://..., dns:NAME, cn:NAME)")
	f.BoolVar(&offline, "offline", false, "decode --token without verifying it (no network)")
	f.StringVar(&ip, "ip", "", "client IP address")
	f.StringArrayVarP(&hdrs, "header", "H", nil, "request header Name:value (repeatable)")
	f.StringVar(&at, "time", "", "time of the request, RFC 3339 (default now)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	_ = c.MarkFlagRequired("config")
	c.MarkFlagsMutuallyExclusive("token", "claims")
	return c
}

func policyCmd() *cobra.Command {
	p := &cobra.Command{Use: "policy", Short: "Work with route policies"}
	var path string
	t := &cobra.Command{
		Use:   "test --config FILE TESTS.yaml...",
		Short: "Run declarative policy tests offline",
		Long: `Run each test case (a request, the caller's identity claims, the expected decision and
reason) against the configuration, without network. Prints a diff for each failure and
exits 1 when any test fails.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := node.LoadConfig(path)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return exitError{1}
			}
			failed := 0
			for _, a := range args {
				tf, err := explain.LoadTests(a)
				if err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), err)
					return exitError{1}
				}
				failed += explain.RunTests(cmd.Context(), cfg, tf, cmd.OutOrStdout())
			}
			if failed > 0 {
				return exitError{1}
			}
			return nil
		},
	}
	t.Flags().StringVarP(&path, "config", "c", "", "configuration file (YAML)")
	_ = t.MarkFlagRequired("config")
	p.AddCommand(t)
	return p
}
