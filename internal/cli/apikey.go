package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ztgate/ztgate/internal/apikey"
	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/node"
)

func apikeyCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "apikey",
		Short: "Make, list and revoke API keys for callers that cannot use OAuth",
		Long: "API keys (ztk_<id>_<secret>) are kept in the store, as hashes: a key is shown once, when it is made.\n" +
			"Each key opens one service, with the roles and scopes it was given; every change is an audit event.\n" +
			"A revocation takes effect on every gateway within about identity.api_keys.poll_interval.",
	}
	var path string
	var asJSON bool
	c.PersistentFlags().StringVarP(&path, "config", "c", "", "configuration file (YAML)")
	c.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")
	_ = c.MarkPersistentFlagRequired("config")

	manager := func(cmd *cobra.Command) (*node.APIKeyAdmin, func(), error) {
		cfg, st, err := openStore(cmd, path)
		if err != nil {
			return nil, nil, err
		}
		logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
		m := &node.APIKeyAdmin{Store: st, Config: func() *config.Config { return cfg }, Record: node.CLIRecorder(cfg, st, logger)}
		return m, func() { st.Close() }, nil
	}

	var req apikey.Request
	var expires string
	create := &cobra.Command{
		Use:   "create --config FILE --name NAME --service SERVICE [--roles R1,R2] [--scopes S1] --expires 90d",
		Short: "Make a key and print it, once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ttl, err := config.ParseDuration(expires)
			if err != nil {
				return fmt.Errorf("--expires: %w", err)
			}
			req.TTL = ttl.D()
			m, done, err := manager(cmd)
			if err != nil {
				return err
			}
			defer done()
			key, k, err := m.Create(cmd.Context(), req, node.CLIActor("create"))
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(map[string]any{"key": key, "api_key": k})
			}
			fmt.Fprintf(out, "API key %s for %s, service %s, expires %s:\n\n  %s\n\n", k.ID, k.Name, k.Service, k.ExpiresAt.Format(time.RFC3339), key)
			fmt.Fprintf(out, "It is shown only now (the store keeps its hash). Send it as Authorization: ApiKey <key>, or in the %s header.\n", keyHeader(m.Config()))
			return nil
		},
	}
	f := create.Flags()
	f.StringVar(&req.Name, "name", "", "who the key is for, e.g. partner-a")
	f.StringVar(&req.Service, "service", "", "the one service the key opens")
	f.StringSliceVar(&req.Roles, "roles", nil, "roles the key carries, comma-separated (allow: { roles: [...] } rules see them)")
	f.StringSliceVar(&req.Scopes, "scopes", nil, "scopes the key carries, comma-separated")
	f.StringVar(&expires, "expires", "", "lifetime, e.g. 90d or 720h (at most 730d)")
	for _, name := range []string{"name", "service", "expires"} {
		_ = create.MarkFlagRequired(name)
	}

	list := &cobra.Command{
		Use:   "list --config FILE",
		Short: "List keys: name, id, service, roles and scopes, when made, expiring and last used, and revocation",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, done, err := manager(cmd)
			if err != nil {
				return err
			}
			defer done()
			ks, err := m.List(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				for _, k := range ks {
					if err := enc.Encode(k); err != nil {
						return err
					}
				}
				return nil
			}
			if len(ks) == 0 {
				fmt.Fprintln(out, "no API keys")
				return nil
			}
			return printKeys(out, ks, time.Now())
		},
	}

	revoke := &cobra.Command{
		Use:   "revoke --config FILE ID",
		Short: "Revoke a key: every gateway refuses it within seconds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, done, err := manager(cmd)
			if err != nil {
				return err
			}
			defer done()
			k, changed, err := m.Revoke(cmd.Context(), args[0], node.CLIActor("revoke"))
			out := cmd.OutOrStdout()
			switch {
			case errors.Is(err, apikey.ErrUnrecorded):
				fmt.Fprintf(out, "revoked %s (%s)\n", k.ID, k.Name)
				return err
			case err != nil:
				return err
			case !changed:
				fmt.Fprintf(out, "%s (%s) was already revoked at %s\n", k.ID, k.Name, k.RevokedAt.Format(time.RFC3339))
			default:
				fmt.Fprintf(out, "revoked %s (%s)\n", k.ID, k.Name)
			}
			return nil
		},
	}
	c.AddCommand(create, list, revoke)
	return c
}

func keyHeader(cfg *config.Config) string {
	if k := cfg.Identity.APIKeys; k != nil && k.Header != "" {
		return k.Header
	}
	return "X-API-Key"
}

func printKeys(w io.Writer, ks []apikey.Key, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tSERVICE\tROLES\tSCOPES\tCREATED\tEXPIRES\tLAST USED\tREVOKED\tSTATE")
	day := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	list := func(s []string) string {
		if len(s) == 0 {
			return "-"
		}
		return strings.Join(s, ",")
	}
	for _, k := range ks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Name, k.ID, k.Service, list(k.Roles), list(k.Scopes),
			day(k.CreatedAt), day(k.ExpiresAt), day(k.LastUsed), day(k.RevokedAt), k.State(now))
	}
	return tw.Flush()
}
