package cli

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/ztgate/ztgate/internal/audit"
	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/node"
	"github.com/ztgate/ztgate/internal/store"
)

func auditCmd() *cobra.Command {
	c := &cobra.Command{Use: "audit", Short: "Query and verify the audit trail"}
	var path string
	c.PersistentFlags().StringVarP(&path, "config", "c", "", "configuration file (YAML)")
	_ = c.MarkPersistentFlagRequired("config")

	verify := &cobra.Command{
		Use:   "verify --config FILE",
		Short: "Walk every node's hash chain and report the first altered, deleted or reordered event",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, st, err := openStore(cmd, path)
			if err != nil {
				return err
			}
			defer st.Close()
			var key []byte
			if cfg.Audit.HMACKey != "" {
				key = []byte(cfg.Audit.HMACKey)
			}
			chain := audit.NewChain(key)
			nodes, err := st.Nodes(cmd.Context())
			if err != nil {
				return err
			}
			bad := false
			for _, n := range nodes {
				recs, err := st.Chain(cmd.Context(), n)
				if err != nil {
					return err
				}
				ck, err := st.Checkpoint(cmd.Context(), n)
				if err != nil {
					return err
				}
				var after int64
				prev, note := "", ""
				if ck != nil {
					if chain.CheckpointMAC(n, ck.Seq, ck.Hash) != ck.MAC {
						bad = true
						fmt.Fprintf(cmd.OutOrStdout(), "node %s: FIRST PROBLEM: the retention checkpoint (sequence %d) was altered\n", n, ck.Seq)
						continue
					}
					after, prev = ck.Seq, ck.Hash
					note = fmt.Sprintf(" (events up to sequence %d removed by retention on %s)", ck.Seq, ck.Time.Format(time.RFC3339))
				}
				if p := chain.VerifyFrom(after, prev, recs); p != nil {
					bad = true
					fmt.Fprintf(cmd.OutOrStdout(), "node %s: %d events; FIRST PROBLEM at sequence %d: %s\n", n, len(recs), p.Seq, p.What)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "node %s: %d events, chain intact%s\n", n, len(recs), note)
			}
			if len(nodes) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no audit events")
			}
			if bad {
				return exitError{1}
			}
			return nil
		},
	}

	var since time.Duration
	var f store.Filter
	var asJSON bool
	query := &cobra.Command{
		Use:   "query --config FILE [--since 1h] [--decision deny] [--identity ID] [--route SERVICE/ROUTE]",
		Short: "List audit events, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, st, err := openStore(cmd, path)
			if err != nil {
				return err
			}
			defer st.Close()
			f.Since = time.Now().Add(-since)
			recs, next, err := st.Query(cmd.Context(), f)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, r := range recs {
				if asJSON {
					fmt.Fprintln(out, r.Body)
					continue
				}
				var e audit.Event
				_ = json.Unmarshal([]byte(r.Body), &e)
				fmt.Fprintf(out, "%s  %-10s %3d %-24s %-6s %-30s %s %s\n", e.Time.Format(time.RFC3339), e.Decision, e.Status, e.Service+"/"+e.Route, e.Method, e.URL, e.Identity, e.ResultDetails)
			}
			if next != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "more: --after %s\n", next)
			}
			return nil
		},
	}
	qf := query.Flags()
	qf.DurationVar(&since, "since", time.Hour, "how far back")
	qf.StringVar(&f.Decision, "decision", "", "allow, deny, would_deny, error or preflight")
	qf.StringVar(&f.Identity, "identity", "", "identity key (tenant/object id, issuer|subject, or a workload ID)")
	qf.StringVar(&f.Route, "route", "", "service/route or route")
	qf.StringVar(&f.After, "after", "", "cursor from the previous page")
	qf.IntVar(&f.Limit, "limit", 100, "events per page (at most 1000)")
	qf.BoolVar(&asJSON, "json", false, "print each event as a JSON line")
	c.AddCommand(verify, query)
	return c
}

func openStore(cmd *cobra.Command, path string) (*config.Config, *store.DB, error) {
	cfg, err := node.LoadConfig(path)
	if err != nil {
		fmt.Fprintln(cmd.ErrOrStderr(), err)
		return nil, nil, exitError{1}
	}
	st, err := node.OpenStore(cmd.Context(), cfg)
	if err != nil {
		return nil, nil, err
	}
	if err := node.SettleJournal(cmd.Context(), cfg, st, 5*time.Second, cliLogger(cmd)); err != nil {
		st.Close()
		return nil, nil, err
	}
	return cfg, st, nil
}

// cliLogger reports to standard error what a command does in passing
// (shipping an audit journal a stopped gateway left).
func cliLogger(cmd *cobra.Command) *slog.Logger {
	return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}
