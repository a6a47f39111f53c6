package cli

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func alertsCmd() *cobra.Command {
	var path string
	var since time.Duration
	var asJSON bool
	c := &cobra.Command{
		Use:   "alerts --config FILE [--since 24h]",
		Short: "List the alerts raised (a dependency down, requests refused), newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, st, err := openStore(cmd, path)
			if err != nil {
				return err
			}
			defer st.Close()
			as, err := st.Alerts(cmd.Context(), time.Now().Add(-since), 1000)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				for _, a := range as {
					_ = enc.Encode(a)
				}
				return nil
			}
			if len(as) == 0 {
				fmt.Fprintln(out, "no alerts")
			}
			for _, a := range as {
				fmt.Fprintf(out, "%s  %-6s %-32s %s (node %s)\n", a.Time.Format(time.RFC3339), a.Severity, a.Rule, a.Summary, a.Node)
			}
			return nil
		},
	}
	c.Flags().StringVarP(&path, "config", "c", "", "configuration file (YAML)")
	c.Flags().DurationVar(&since, "since", 24*time.Hour, "how far back")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON lines")
	_ = c.MarkFlagRequired("config")
	return c
}
