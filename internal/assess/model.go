package assess

import (
	"fmt"
	"strings"
)

// Stage is a maturity stage of the CISA Zero Trust Maturity Model v2.0.
type Stage int

// The stages, in order.
const (
	Traditional Stage = iota
	Initial
	Advanced
	Optimal
)

var stageNames = [...]string{"Traditional", "Initial", "Advanced", "Optimal"}

// Stages lists every stage in order.
var Stages = []Stage{Traditional, Initial, Advanced, Optimal}

func (s Stage) String() string {
	if s < Traditional || s > Optimal {
		return fmt.Sprintf("Stage(%d)", int(s))
	}
	return stageNames[s]
}

// Microsoft names the stage in the three-stage view of Microsoft's Zero
// Trust material. It has one stage fewer: CISA's Traditional and Initial
// both fall in its first stage.
func (s Stage) Microsoft() string {
	switch s {
	case Advanced:
		return "Intermediate/Advanced"
	case Optimal:
		return "Optimal"
	}
	return "Initial"
}

// MarshalText writes the stage's name.
func (s Stage) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a stage's name.
func (s *Stage) UnmarshalText(b []byte) error {
	for i, n := range stageNames {
		if strings.EqualFold(n, string(b)) {
			*s = Stage(i)
			return nil
		}
	}
	return fmt.Errorf("unknown stage %q", b)
}

// Pillar is one of the model's five pillars or one of its three
// cross-cutting capabilities; each gets a stage of its own.
type Pillar string

// The pillars and cross-cutting capabilities.
const (
	Identity     Pillar = "identity"
	Devices      Pillar = "devices"
	Networks     Pillar = "networks"
	Applications Pillar = "applications"
	Data         Pillar = "data"
	Visibility   Pillar = "visibility"
	Automation   Pillar = "automation"
	Governance   Pillar = "governance"
)

// PillarInfo describes a pillar.
type PillarInfo struct {
	ID           Pillar `json:"id"`
	Name         string `json:"name"`
	CrossCutting bool   `json:"cross_cutting"`
}

// Pillars lists the pillars in the model's order, the cross-cutting
// capabilities last.
var Pillars = []PillarInfo{
	{Identity, "Identity", false},
	{Devices, "Devices", false},
	{Networks, "Networks", false},
	{Applications, "Applications & Workloads", false},
	{Data, "Data", false},
	{Visibility, "Visibility & Analytics", true},
	{Automation, "Automation & Orchestration", true},
	{Governance, "Governance", true},
}

// Name returns the pillar's display name.
func (p Pillar) Name() string {
	for _, i := range Pillars {
		if i.ID == p {
			return i.Name
		}
	}
	return string(p)
}

// Outcome is what a check found.
type Outcome string

// The outcomes. Only pass moves a pillar towards the check's stage;
// partial and fail hold it back; the others neither count for nor against.
const (
	Pass          Outcome = "pass"
	Partial       Outcome = "partial"
	Fail          Outcome = "fail"
	Unknown       Outcome = "unknown"        // no data to judge by (no store, no traffic)
	NotApplicable Outcome = "not_applicable" // nothing in the configuration it applies to
	NotAvailable  Outcome = "not_available"  // the capability is not in this version of ztgate
)

// Outcomes lists every outcome, in the order reports show them.
var Outcomes = []Outcome{Pass, Partial, Fail, Unknown, NotApplicable, NotAvailable}

// Blocks reports whether the outcome holds a pillar below the check's stage.
func (o Outcome) Blocks() bool { return o == Partial || o == Fail }

// Label is the outcome as a reader sees it.
func (o Outcome) Label() string {
	switch o {
	case NotApplicable:
		return "not applicable"
	case NotAvailable:
		return "not available in this version"
	}
	return string(o)
}
