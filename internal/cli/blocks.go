package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ztgate/ztgate/internal/detect"
	"github.com/ztgate/ztgate/internal/node"
)

// blocksCmd lists and lifts the detector's blocks through the running
// gateway's admin API (blocks live in the node, or in Redis shared by all
// nodes): the configuration names the admin address.
func blocksCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "blocks",
		Short: "List or lift the blocks the detector raised (through the running gateway's admin API)",
	}
	var path, adminURL string
	var asJSON bool
	list := &cobra.Command{
		Use:   "list --config FILE",
		Short: "List the blocks in force, soonest to expire first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Blocks []detect.Block `json:"blocks"`
			}
			if err := adminCall(cmd, path, adminURL, http.MethodGet, "/v1/blocks", &out); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(w)
				for _, b := range out.Blocks {
					_ = enc.Encode(b)
				}
				return nil
			}
			if len(out.Blocks) == 0 {
				fmt.Fprintln(w, "no blocks")
			}
			for _, b := range out.Blocks {
				fmt.Fprintf(w, "%-8s %-40s until %s  rule %s (node %s): %s\n", b.Kind, b.Key, b.Until.UTC().Format(time.RFC3339), b.Rule, b.Node, b.Reason)
			}
			return nil
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON lines")
	lift := &cobra.Command{
		Use:   "lift KIND KEY --config FILE",
		Short: "Lift a block (KIND is ip, identity or api_key); the lift is audited",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := "/v1/blocks/" + url.PathEscape(args[0]) + "/" + url.PathEscape(args[1])
			if err := adminCall(cmd, path, adminURL, http.MethodDelete, p, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lifted the block on %s %s\n", args[0], args[1])
			return nil
		},
	}
	for _, sub := range []*cobra.Command{list, lift} {
		sub.Flags().StringVarP(&path, "config", "c", "", "configuration file (YAML); its admin.address is called")
		sub.Flags().StringVar(&adminURL, "admin", "", "the admin API's URL instead (e.g. http://127.0.0.1:9090)")
		c.AddCommand(sub)
	}
	return c
}

// adminCall calls the admin API at base, or else of the gateway running
// the configuration at path, and decodes a JSON answer into out (when not
// nil).
func adminCall(cmd *cobra.Command, path, base, method, p string, out any) error {
	if base == "" {
		if path == "" {
			return fmt.Errorf("give --config FILE (its admin.address is called) or --admin URL")
		}
		cfg, err := node.LoadConfig(path)
		if err != nil {
			return err
		}
		host, port, err := net.SplitHostPort(cfg.Admin.Address)
		if err != nil {
			return fmt.Errorf("admin.address %q: %w", cfg.Admin.Address, err)
		}
		if port == "0" {
			return fmt.Errorf("admin.address %q has no fixed port: give --admin URL", cfg.Admin.Address)
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		base = "http://" + net.JoinHostPort(host, port)
	}
	req, err := http.NewRequestWithContext(cmd.Context(), method, strings.TrimSuffix(base, "/")+p, nil)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("the gateway's admin API at %s: %w (is the gateway running?)", base, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error  string `json:"error"`
			Reason string `json:"reason"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s (%s)", e.Error, e.Reason)
		}
		return fmt.Errorf("admin API: %s", resp.Status)
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}
