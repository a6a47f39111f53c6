// Package dlp finds sensitive data in response bodies and masks it as the
// body streams past: payment card numbers, IBANs, e-mail addresses, US
// social security numbers, Azure storage keys and SAS signatures, JWTs, PEM
// private keys, named regular expressions, and values at JSON paths.
//
// A Masker is fed a body in pieces of any size and gives the same output as
// for the whole body at once, holding back only the bytes that could still
// begin a match (at most the longest match a detector allows), so memory
// stays bounded however long the body is. It works on bytes alone: HTTP,
// audit and metrics belong to its caller.
package dlp

import (
	"fmt"
	"mime"
	"slices"
	"strings"
)

// Detector names, as written in configuration, audit events and metrics.
const (
	PrivateKey      = "private_key"
	JWT             = "jwt"
	AzureStorageKey = "azure_storage_key"
	AzureSAS        = "azure_sas"
	IBAN            = "iban"
	CreditCard      = "credit_card"
	USSSN           = "us_ssn"
	Email           = "email"
	// JSONPath counts the values masked by JSON path.
	JSONPath = "json_path"
)

// Builtins lists the built-in detectors in the order they are tried where
// two could start at the same byte.
func Builtins() []string { return slices.Clone(builtinNames) }

var builtinNames = []string{PrivateKey, JWT, AzureStorageKey, AzureSAS, IBAN, CreditCard, USSSN, Email}

// Action is what happens to a match.
type Action string

const (
	// Mask replaces the match with a token such as [REDACTED:email].
	Mask Action = "mask"
	// Block refuses the whole response.
	Block Action = "block"
)

// Rule is a named regular expression (RE2 syntax).
type Rule struct {
	Name  string
	Regex string
}

// Config is one route's DLP configuration.
type Config struct {
	Mask  []string // detector names, built-in or custom
	Block []string
	// Custom defines detectors by regular expression; each must be named in
	// Mask or Block.
	Custom []Rule
	// JSONPaths are masked in JSON bodies, e.g. $.customer.ssn, $.items[*].card.
	JSONPaths []string
	// CardLast4 keeps the last four digits of a masked card number.
	CardLast4 bool
}

// Policy is a compiled Config. It is safe for concurrent use; each body
// gets its own Masker.
type Policy struct {
	names   []string    // detector id -> name: builtins, then custom
	actions []Action    // by detector id; "" when off
	builtin uint16      // bit per enabled built-in detector
	starts  [256]uint16 // the enabled built-ins that can start at each byte
	customs []*customRE
	paths   []jsonPath
	last4   bool
	blocks  bool
	tokens  [][]byte // by detector id
}

// Compile checks c and builds its Policy.
func Compile(c Config) (*Policy, error) {
	p := &Policy{names: slices.Clone(builtinNames), last4: c.CardLast4}
	for _, r := range c.Custom {
		if err := CheckName(r.Name); err != nil {
			return nil, fmt.Errorf("custom detector %q: %w", r.Name, err)
		}
		if slices.Contains(p.names, r.Name) {
			return nil, fmt.Errorf("custom detector %q: the name is taken", r.Name)
		}
		re, err := compileCustom(r.Regex)
		if err != nil {
			return nil, fmt.Errorf("custom detector %q: %w", r.Name, err)
		}
		re.id = len(p.names)
		p.names = append(p.names, r.Name)
		p.customs = append(p.customs, re)
	}
	p.actions = make([]Action, len(p.names))
	for _, l := range []struct {
		names []string
		a     Action
	}{{c.Mask, Mask}, {c.Block, Block}} {
		for _, n := range l.names {
			id := slices.Index(p.names, n)
			if id < 0 {
				return nil, fmt.Errorf("unknown detector %q (known: %s)", n, strings.Join(p.names, ", "))
			}
			if p.actions[id] != "" {
				return nil, fmt.Errorf("detector %q is listed twice", n)
			}
			p.actions[id] = l.a
			if l.a == Block {
				p.blocks = true
			}
			if id < len(builtinNames) {
				p.builtin |= 1 << id
			}
		}
	}
	for c := range p.starts {
		p.starts[c] = starts[c] & p.builtin
	}
	for _, re := range p.customs {
		if p.actions[re.id] == "" {
			return nil, fmt.Errorf("custom detector %q is in neither mask nor block", p.names[re.id])
		}
	}
	for _, s := range c.JSONPaths {
		jp, err := ParsePath(s)
		if err != nil {
			return nil, err
		}
		p.paths = append(p.paths, jp)
	}
	p.tokens = make([][]byte, len(p.names))
	for id, n := range p.names {
		p.tokens[id] = []byte("[REDACTED:" + n + "]")
	}
	return p, nil
}

// CheckName reports whether name may name a custom detector.
func CheckName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("a name is 1 to 64 characters")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' && i > 0 || c == '_' && i > 0) {
			return fmt.Errorf("bad name %q: lower-case letters, digits and '_', starting with a letter", name)
		}
	}
	if name == JSONPath {
		return fmt.Errorf("%q is reserved", name)
	}
	return nil
}

// Blocks reports whether any detector blocks, so that a response must be
// read whole before it starts.
func (p *Policy) Blocks() bool { return p.blocks }

// Action returns what the policy does with matches of the named detector.
func (p *Policy) Action(name string) Action {
	if name == JSONPath {
		return Mask
	}
	if id := slices.Index(p.names, name); id >= 0 {
		return p.actions[id]
	}
	return ""
}

// Kind is how a body is read.
type Kind uint8

const (
	// Text bodies are scanned as bytes.
	Text Kind = iota
	// JSON bodies also have their JSON paths masked, and a match outside a
	// string (a card number written as a JSON number) becomes a string.
	JSON
)

// KindOf returns how a body of the given Content-Type is read, and false for
// types that are not scanned (images, archives, other binary data). A body
// without a type is read as text.
func KindOf(contentType string) (Kind, bool) {
	if strings.TrimSpace(contentType) == "" {
		return Text, true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		// An unparsable type is not a reason to let a body through unread.
		return Text, true
	}
	switch {
	case mt == "application/json", strings.HasSuffix(mt, "+json"), mt == "application/x-ndjson", mt == "application/jsonl":
		return JSON, true
	case strings.HasPrefix(mt, "text/"), mt == "application/xml", strings.HasSuffix(mt, "+xml"),
		mt == "application/x-www-form-urlencoded", mt == "application/javascript":
		return Text, true
	}
	return Text, false
}

// Result is what a Masker found.
type Result struct {
	// Counts holds the matches of each detector that matched, by name.
	Counts map[string]int
	// Blocked names the first blocking detector that matched, if any.
	Blocked string
}

// Mask masks a whole body.
func (p *Policy) Mask(k Kind, body []byte) ([]byte, Result) {
	m := p.NewMasker(k)
	out := m.Append(make([]byte, 0, len(body)+len(body)/16), body)
	out = m.Finish(out)
	return out, m.Result()
}
