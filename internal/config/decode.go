package config

import (
	"fmt"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// Error is one problem in a configuration file.
type Error struct {
	File   string
	Line   int
	Column int
	Path   string // key path, e.g. services[0].routes[1].match.path
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
	}
	if e.Path != "" {
		b.WriteString(": ")
		b.WriteString(e.Path)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file, in file order.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap lets errors.As find each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// decoder walks a YAML node tree into Go values strictly, collecting every
// error with its position and key path rather than stopping at the first.
type decoder struct {
	file      string
	errs      Errors
	pos       map[string]Pos
	interp    func(s string) (string, error) // resolves ${...} references; nil: none
	lookupEnv func(string) (string, bool)    // for templates; nil: os.LookupEnv
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	e := &Error{File: d.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

var (
	durationType = reflect.TypeFor[Duration]()
	templateType = reflect.TypeFor[Template]()
)

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	d.pos[path] = Pos{n.Line, n.Column}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		// An explicit null leaves the zero value (and its defaults).
		return
	}
	if v.Type() == durationType {
		d.decodeDuration(n, v, path)
		return
	}
	if v.Type() == templateType {
		d.decodeTemplate(n, v, path)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
			if v.Elem().Kind() == reflect.Struct {
				applyDefaults(v.Elem())
			}
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, path, "expected a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			el := s.Index(i)
			if el.Kind() == reflect.Struct {
				applyDefaults(el)
			}
			d.decode(c, el, fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.errorf(n, path, "expected a mapping, got %s", describe(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				d.errorf(k, path, "map keys must be strings")
				continue
			}
			if seen[k.Value] {
				d.errorf(k, path+"."+k.Value, "duplicate key %q", k.Value)
				continue
			}
			seen[k.Value] = true
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, ev, path+"."+k.Value)
			m.SetMapIndex(reflect.ValueOf(k.Value), ev)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
			d.errorf(n, path, "expected a string, got %s (quote it if it is meant as text)", describe(n))
			return
		}
		s := n.Value
		if d.interp != nil && strings.Contains(s, "${") {
			r, err := d.interp(s)
			if err != nil {
				d.errorf(n, path, "%v", err)
				return
			}
			s = r
		}
		v.SetString(s)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.errorf(n, path, "expected true or false, got %s", describe(n))
			return
		}
		b, err := strconv.ParseBool(n.Value)
		if err != nil {
			d.errorf(n, path, "expected true or false, got %q", n.Value)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.errorf(n, path, "expected an integer, got %s", describe(n))
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		if err != nil || (v.Kind() == reflect.Int && (i > math.MaxInt32 || i < math.MinInt32)) {
			d.errorf(n, path, "integer %s out of range", n.Value)
			return
		}
		if i < 0 {
			d.errorf(n, path, "must not be negative, got %d", i)
			return
		}
		v.SetInt(i)
	case reflect.Interface:
		// Reserved keys of unsupported features hold anything; they are refused
		// before this point.
		var x any
		if err := n.Decode(&x); err != nil {
			d.errorf(n, path, "%v", err)
			return
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
	default:
		panic(fmt.Sprintf("config: no decoder for %s", v.Type()))
	}
}

// decodeTemplate parses a string whose ${secret:...} references are kept
// for resolution at use; ${env:...} references are resolved now.
func (d *decoder) decodeTemplate(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		d.errorf(n, path, "expected a string, got %s (quote it if it is meant as text)", describe(n))
		return
	}
	lookup := d.lookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	t, err := ParseTemplate(n.Value, lookup)
	if err != nil {
		d.errorf(n, path, "%v", err)
		return
	}
	v.Set(reflect.ValueOf(t))
}

func (d *decoder) decodeDuration(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		d.errorf(n, path, "expected a duration such as 30s, 5m or 1h, got %s", describe(n))
		return
	}
	dur, err := ParseDuration(n.Value)
	if err != nil {
		d.errorf(n, path, "%v", err)
		return
	}
	v.SetInt(int64(dur))
}

// ParseDuration parses a Go duration, also accepting a whole number of days
// ("2d"). Negative durations are refused.
func ParseDuration(s string) (Duration, error) {
	var dur time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok && days != "" && !strings.ContainsAny(days, "hmsuµn.") {
		n, err := strconv.Atoi(days)
		if err != nil || n > 100000 {
			return 0, fmt.Errorf("bad duration %q: want a number followed by a unit (ms, s, m, h, d)", s)
		}
		dur = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		dur, err = time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("bad duration %q: want a number followed by a unit (ms, s, m, h, d)", s)
		}
	}
	if dur < 0 {
		return 0, fmt.Errorf("bad duration %q: must not be negative", s)
	}
	return Duration(dur), nil
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping of keys, got %s", describe(n))
		return
	}
	info := structInfoOf(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		kp := joinPath(path, k.Value)
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "keys must be plain strings")
			continue
		}
		if seen[k.Value] {
			d.errorf(k, kp, "duplicate key %q", k.Value)
			continue
		}
		seen[k.Value] = true
		f, ok := info.byName[k.Value]
		if !ok {
			d.errorf(k, kp, "unknown key %q (known keys: %s)", k.Value, strings.Join(info.names, ", "))
			continue
		}
		if f.unsupported {
			d.errorf(k, kp, "%q is part of the configuration contract but not supported by this version of ztgate; remove it (it would otherwise be silently ignored)", k.Value)
			continue
		}
		if f.secret && val.Kind == yaml.ScalarNode && val.Tag == "!!str" && !strings.Contains(val.Value, "${") {
			d.errorf(val, kp, "write a ${secret:PROVIDER/NAME} or ${env:NAME} reference here, not the secret itself")
			continue
		}
		fv := v.Field(f.index)
		d.decode(val, fv, kp)
		if f.enum != nil {
			d.checkEnum(val, fv, kp, f.enum)
		}
	}
	for _, f := range info.fields {
		if f.required && !seen[f.name] {
			d.errorf(n, path, "missing required key %q", f.name)
		}
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			return fmt.Sprintf("string %q", n.Value)
		case "!!int":
			return "integer " + n.Value
		case "!!float":
			return "number " + n.Value
		case "!!bool":
			return n.Value
		case "!!null":
			return "null"
		}
		return fmt.Sprintf("%s %q", strings.TrimPrefix(n.Tag, "!!"), n.Value)
	}
	return "an unexpected node"
}

// field describes one YAML key of a struct.
type field struct {
	name        string
	index       int
	typ         reflect.Type
	doc         string
	def         string
	enum        []string
	required    bool
	unsupported bool
	secret      bool // the value must be a ${...} reference, never inline
}

type structInfo struct {
	fields []field
	byName map[string]field
	names  []string // supported keys, sorted, for error messages
}

var structInfoCache sync.Map // reflect.Type -> *structInfo

func structInfoOf(t reflect.Type) *structInfo {
	if si, ok := structInfoCache.Load(t); ok {
		return si.(*structInfo)
	}
	si := &structInfo{byName: map[string]field{}}
	for i := range t.NumField() {
		sf := t.Field(i)
		name := sf.Tag.Get("yaml")
		if name == "" || name == "-" || !sf.IsExported() {
			continue
		}
		f := field{
			name:        name,
			index:       i,
			typ:         sf.Type,
			doc:         sf.Tag.Get("doc"),
			def:         sf.Tag.Get("default"),
			required:    sf.Tag.Get("required") == "true",
			unsupported: sf.Tag.Get("unsupported") == "true",
			secret:      sf.Tag.Get("secret") == "true",
		}
		if e := sf.Tag.Get("enum"); e != "" {
			f.enum = strings.Split(e, ",")
		}
		si.fields = append(si.fields, f)
		si.byName[name] = f
		if !f.unsupported {
			si.names = append(si.names, name)
		}
	}
	slices.Sort(si.names)
	structInfoCache.Store(t, si)
	return si
}

// applyDefaults sets every field of the struct v that has a default tag, and
// recurses into nested (non-pointer) structs.
func applyDefaults(v reflect.Value) {
	for _, f := range structInfoOf(v.Type()).fields {
		fv := v.Field(f.index)
		if fv.Kind() == reflect.Struct && fv.Type() != durationType && fv.Type() != templateType {
			applyDefaults(fv)
			continue
		}
		if f.def == "" {
			continue
		}
		switch {
		case fv.Type() == durationType:
			dur, err := ParseDuration(f.def)
			if err != nil {
				panic(fmt.Sprintf("config: bad default %q", f.def))
			}
			fv.SetInt(int64(dur))
		case fv.Kind() == reflect.String:
			fv.SetString(f.def)
		case fv.Kind() == reflect.Bool:
			fv.SetBool(f.def == "true")
		case fv.Kind() == reflect.Int || fv.Kind() == reflect.Int64:
			i, err := strconv.ParseInt(f.def, 10, 64)
			if err != nil {
				panic(fmt.Sprintf("config: bad default %q", f.def))
			}
			fv.SetInt(i)
		case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.String:
			var s []string
			if err := yaml.Unmarshal([]byte(f.def), &s); err != nil {
				panic(fmt.Sprintf("config: bad default %q", f.def))
			}
			fv.Set(reflect.ValueOf(s))
		}
	}
}

func (d *decoder) checkEnum(n *yaml.Node, v reflect.Value, path string, enum []string) {
	check := func(n *yaml.Node, s, path string) {
		if !slices.Contains(enum, s) {
			d.errorf(n, path, "%q is not one of: %s", s, strings.Join(enum, ", "))
		}
	}
	switch v.Kind() {
	case reflect.String:
		check(n, v.String(), path)
	case reflect.Slice:
		for i := range v.Len() {
			cn := n
			if n.Kind == yaml.SequenceNode && i < len(n.Content) {
				cn = n.Content[i]
			}
			check(cn, v.Index(i).String(), fmt.Sprintf("%s[%d]", path, i))
		}
	}
}
