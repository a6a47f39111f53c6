// Package cli defines ztgate's command line: serve, check, explain, policy,
// audit, alerts, apikey, schema, demo and version. Commands parse flags and
// call into the packages that do the work.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/demo"
	"github.com/ztgate/ztgate/internal/node"
)

// Version is set at build time with -ldflags "-X github.com/ztgate/ztgate/internal/cli.Version=v1.2.3".
var Version = ""

// exitError carries an exit code without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// Main runs the command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintln(stderr, "ztgate:", err)
	return 1
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "ztgate",
		Short:         "ztgate: a Zero Trust gateway for APIs and services",
		Long:          "ztgate puts APIs, Azure Functions and internal services behind one verified entry point:\nevery call proves who it is, may do only what policy grants, and leaves a trace.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(serveCmd(), checkCmd(), explainCmd(), policyCmd(), auditCmd(), alertsCmd(), blocksCmd(), apikeyCmd(), assessCmd(), schemaCmd(), demoCmd(), versionCmd())
	return root
}

// logPending bounds the log lines queued for writing (bytes); past it a
// request waits to log, as it would behind a slow stderr.
const logPending = 256 << 10

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad --log-level %q: want debug, info, warn or error", level)
	}
	o := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	}
	return nil, fmt.Errorf("bad --log-format %q: want json or text", format)
}

func serveCmd() *cobra.Command {
	var path, logFormat, logLevel string
	c := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the gateway",
		Long:  "Run the gateway with the configuration in FILE. SIGHUP or a change to the file reloads it;\na broken file is refused and the previous configuration keeps serving. SIGTERM drains in-flight requests.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Log lines are written by a goroutine of their own, off the
			// request path; what is queued is written before serve returns.
			lw := newLogWriter(cmd.ErrOrStderr(), logPending)
			defer lw.Close()
			logger, err := newLogger(lw, logFormat, logLevel)
			if err != nil {
				return err
			}
			return node.Run(cmd.Context(), path, node.Options{Logger: logger})
		},
	}
	c.Flags().StringVarP(&path, "config", "c", "", "configuration file (YAML)")
	c.Flags().StringVar(&logFormat, "log-format", "json", "log format: json or text")
	c.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	_ = c.MarkFlagRequired("config")
	_ = c.MarkFlagFilename("config", "yaml", "yml")
	return c
}

func checkCmd() *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "check --config FILE",
		Short: "Validate a configuration file and exit",
		Long:  "Validate FILE without serving. Every problem is printed as file:line:column: key.path: message.\nExit status 0 when the file is valid, 1 when it is not.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := node.LoadConfig(path)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return exitError{1}
			}
			routes, open := 0, 0
			for _, s := range cfg.Services {
				for _, r := range s.Routes {
					routes++
					if r.Allow == nil && s.Allow == nil {
						open++
						fmt.Fprintf(cmd.OutOrStdout(), "note: route %s/%s has no allow rule: it denies every request\n", s.Name, r.Name)
					}
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d services, %d routes, %d identity providers; policy version %s)\n",
				path, len(cfg.Services), routes, len(cfg.Identity.Providers), cfg.Hash)
			return nil
		},
	}
	c.Flags().StringVarP(&path, "config", "c", "", "configuration file (YAML)")
	_ = c.MarkFlagRequired("config")
	_ = c.MarkFlagFilename("config", "yaml", "yml")
	return c
}

func schemaCmd() *cobra.Command {
	var markdown bool
	c := &cobra.Command{
		Use:   "schema",
		Short: "Print the configuration's JSON Schema",
		Long:  "Print the JSON Schema (draft 2020-12) of the configuration file, for editors and CI.\nWith --markdown, print the configuration reference table instead.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if markdown {
				_, err := io.WriteString(cmd.OutOrStdout(), config.Reference())
				return err
			}
			_, err := cmd.OutOrStdout().Write(config.Schema())
			return err
		},
	}
	c.Flags().BoolVar(&markdown, "markdown", false, "print the reference as a Markdown table")
	return c
}

func demoCmd() *cobra.Command {
	var o demo.Options
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run a self-contained demo: gateway, demo upstream and a local token issuer",
		Long:  "Start the gateway, a demo upstream and a local development token issuer (for the demo only),\nwrite the demo configuration to a temporary directory and print what to try. Ctrl-C stops it.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return demo.Run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	c.Flags().StringVar(&o.Listen, "listen", "127.0.0.1:8080", "gateway address (a free port is used if it is taken)")
	c.Flags().StringVar(&o.Admin, "admin", "127.0.0.1:9090", "admin address (a free port is used if it is taken)")
	c.Flags().StringVar(&o.Dir, "dir", "", "directory for the demo's files (default: a new temporary directory)")
	return c
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "ztgate", versionString())
		},
	}
}

func versionString() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v + " " + bi.GoVersion
}
