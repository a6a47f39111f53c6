package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ztgate/ztgate/internal/dlp"
)

// dlp checks a route's DLP: detector names known and listed once, custom
// patterns that compile to bounded-length matches, JSON paths that parse.
func (v *validator) dlp(path string, d *DLP) {
	if d == nil {
		return
	}
	if len(d.Mask) == 0 && len(d.Block) == 0 && len(d.JSONPaths) == 0 {
		v.errorf(path, "nothing to do: list detectors under mask or block, or values under json_paths")
	}
	custom := map[string]bool{}
	for i, c := range d.Custom {
		cp := fmt.Sprintf("%s.custom[%d]", path, i)
		switch err := dlp.CheckName(c.Name); {
		case err != nil:
			v.errorf(cp+".name", "%v", err)
		case slices.Contains(dlp.Builtins(), c.Name):
			v.errorf(cp+".name", "%q is a built-in detector; give the custom one another name", c.Name)
		case custom[c.Name]:
			v.errorf(cp+".name", "duplicate custom detector %q", c.Name)
		}
		custom[c.Name] = true
		if err := dlp.CheckRegex(c.Regex); err != nil {
			v.errorf(cp+".regex", "%v", err)
		}
	}
	used := map[string]string{}
	for _, l := range []struct {
		key   string
		names []string
	}{{"mask", d.Mask}, {"block", d.Block}} {
		for i, n := range l.names {
			np := fmt.Sprintf("%s.%s[%d]", path, l.key, i)
			if !slices.Contains(dlp.Builtins(), n) && !custom[n] {
				known := dlp.Builtins()
				for _, c := range d.Custom {
					known = append(known, c.Name)
				}
				v.errorf(np, "unknown detector %q (known: %s)", n, strings.Join(known, ", "))
				continue
			}
			if other, dup := used[n]; dup {
				v.errorf(np, "detector %q is already listed under %s", n, other)
				continue
			}
			used[n] = l.key
		}
	}
	for i, c := range d.Custom {
		if _, ok := used[c.Name]; !ok && custom[c.Name] {
			v.errorf(fmt.Sprintf("%s.custom[%d].name", path, i), "custom detector %q is in neither mask nor block", c.Name)
		}
	}
	for i, p := range d.JSONPaths {
		if _, err := dlp.ParsePath(p); err != nil {
			v.errorf(fmt.Sprintf("%s.json_paths[%d]", path, i), "%v", err)
		}
	}
	if d.CardLast4 && used[dlp.CreditCard] != "mask" {
		v.errorf(path+".card_last4", "card_last4 needs credit_card under mask")
	}
	if d.MaxBytes < 1024 || d.MaxBytes > 64<<20 {
		v.errorf(path+".max_bytes", "must be between 1024 and 67108864 (64 MiB), got %d", d.MaxBytes)
	}
}
