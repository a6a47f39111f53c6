package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ztgate/ztgate/internal/assess"
	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/node"
)

func assessCmd() *cobra.Command {
	var (
		path, since, format, out string
		noRecord                 bool
		tests                    []string
	)
	c := &cobra.Command{
		Use:   "assess --config FILE [--since 30d] [--format html|md|json] [--out FILE]",
		Short: "Where do we stand? A Zero Trust maturity assessment from the configuration and its audit trail",
		Long: `Assess the deployment against the CISA Zero Trust Maturity Model v2.0 (pillars Identity,
Devices, Networks, Applications & Workloads, Data; cross-cutting Visibility & Analytics,
Automation & Orchestration, Governance), with Microsoft's three-stage view beside it.

Each check evidences one function at one stage from the configuration (file:line) and the
audit trail over --since, and says what to do next with a configuration snippet. A pillar's
stage is explained by the checks that reach it or hold it back. The result is recorded in
the store (unless --no-record), so the next run shows this one beside it.

Policy tests (*_test.yaml beside the configuration or in its tests/ directory, or --tests)
are run offline as part of the assessment. The format follows --out's extension unless
--format is given; without --out the report goes to standard output as Markdown.`,
		Example: `  ztgate assess --config ztgate.yaml --out assessment.html
  ztgate assess --config ztgate.yaml --since 90d --format json > assessment.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			window, err := config.ParseDuration(since)
			if err != nil || window == 0 {
				return fmt.Errorf("bad --since %q: want a duration such as 30d or 12h", since)
			}
			if format == "" {
				format = strings.TrimPrefix(filepath.Ext(out), ".")
				if !slices.Contains(assess.Formats, format) {
					format = "md"
				}
			}
			if !slices.Contains(assess.Formats, format) {
				return fmt.Errorf("bad --format %q: want html, md or json", format)
			}
			cfg, err := node.LoadConfig(path)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return exitError{1}
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			o := assess.Options{Since: window.D(), Name: path, Raw: raw, Record: !noRecord}
			if cmd.Flags().Changed("tests") {
				o.PolicyTests = tests
				if o.PolicyTests == nil {
					o.PolicyTests = []string{}
				}
			}
			if cfg.Store != nil {
				st, err := node.OpenStore(cmd.Context(), cfg)
				if err != nil {
					return err
				}
				defer st.Close()
				if err := node.SettleJournal(cmd.Context(), cfg, st, 5*time.Second, cliLogger(cmd)); err != nil {
					return err
				}
				o.Audit, o.History = st, st
			}
			rep, err := assess.Run(cmd.Context(), cfg, o)
			if err != nil {
				return err
			}
			var b bytes.Buffer
			if err := rep.Write(&b, format); err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err := cmd.OutOrStdout().Write(b.Bytes())
				return err
			}
			if err := os.WriteFile(out, b.Bytes(), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%s: overall %s (Microsoft: %s)%s\n", out, rep.Overall.Stage, rep.Overall.Microsoft, stagesLine(rep))
			return nil
		},
	}
	f := c.Flags()
	f.StringVarP(&path, "config", "c", "", "configuration file (YAML)")
	f.StringVar(&since, "since", "30d", "how much of the audit trail to read, e.g. 30d, 12h")
	f.StringVar(&format, "format", "", "html, md or json (default: from --out's extension, else md)")
	f.StringVarP(&out, "out", "o", "", "write the report to this file (default: standard output)")
	f.BoolVar(&noRecord, "no-record", false, "do not record this run in the store (no trend entry)")
	f.StringSliceVar(&tests, "tests", nil, "policy test files to run (default: *_test.yaml beside the configuration and in tests/)")
	_ = c.MarkFlagRequired("config")
	_ = c.MarkFlagFilename("config", "yaml", "yml")
	return c
}

func stagesLine(rep *assess.Report) string {
	var parts []string
	for _, p := range rep.Pillars {
		parts = append(parts, fmt.Sprintf("%s %s", p.Name, p.Stage))
	}
	return "; " + strings.Join(parts, ", ")
}
