package assess

import (
	"reflect"
	"strings"
	"sync"

	"github.com/ztgate/ztgate/internal/config"
)

// Capability says whether this version of ztgate has a configuration key.
// Checks of features that are still being built read their keys through
// it, by name, so that they start to count the day the key lands without
// a change here.
type Capability int

// The capabilities of a key.
const (
	Absent      Capability = iota // no such key in this version
	Unsupported                   // part of the contract, refused by this version
	Supported
)

// probe reports the capability of a key path such as "audit.exporters" or
// "services.routes.dlp" (list levels are named without an index), or of a
// value, "key=value", listed in valueProbes.
func probe(path string) Capability {
	if snippet, ok := valueProbes[path]; ok {
		if c, ok := probed.Load(path); ok {
			return c.(Capability)
		}
		c := probeValue(snippet)
		probed.Store(path, c)
		return c
	}
	t := reflect.TypeFor[config.Config]()
	capa := Supported
	for _, key := range strings.Split(path, ".") {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return Absent
		}
		f, ok := fieldByKey(t, key)
		if !ok {
			return Absent
		}
		if f.Tag.Get("unsupported") == "true" {
			capa = Unsupported
		}
		t = f.Type
	}
	return capa
}

// valueProbes are configurations using one value of a key: whether this
// version refuses them as not supported says whether it has the value.
var valueProbes = map[string]string{
	"secrets.providers.type=azure_keyvault": "secrets:\n  providers:\n    - { name: kv, type: azure_keyvault, vault_url: \"https://probe.vault.azure.net/\" }\n",
}

var probed sync.Map // path -> Capability

func probeValue(snippet string) Capability {
	_, err := config.Parse("probe.yaml", []byte(snippet), config.Options{})
	if err != nil && strings.Contains(err.Error(), "not supported by this version") {
		return Unsupported
	}
	return Supported
}

func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == key && f.IsExported() {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// lookup returns the value at a key path below v (a struct or a pointer to
// one), and false when a key is absent or a pointer on the way is nil.
func lookup(v any, path string) (reflect.Value, bool) {
	rv := reflect.ValueOf(v)
	for _, key := range strings.Split(path, ".") {
		for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
			if rv.IsNil() {
				return reflect.Value{}, false
			}
			rv = rv.Elem()
		}
		if rv.Kind() != reflect.Struct {
			return reflect.Value{}, false
		}
		f, ok := fieldByKey(rv.Type(), key)
		if !ok {
			return reflect.Value{}, false
		}
		rv = rv.FieldByIndex(f.Index)
	}
	return rv, true
}

// set reports whether the value at a key path is present and not zero.
func set(v any, path string) bool {
	rv, ok := lookup(v, path)
	return ok && rv.IsValid() && !rv.IsZero()
}

// stringAt returns the string at a key path ("" when absent).
func stringAt(v any, path string) string {
	rv, ok := lookup(v, path)
	if !ok {
		return ""
	}
	for rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.String {
		return ""
	}
	return rv.String()
}

// listAt returns the elements of the list at a key path.
func listAt(v any, path string) []any {
	rv, ok := lookup(v, path)
	if !ok || rv.Kind() != reflect.Slice {
		return nil
	}
	out := make([]any, rv.Len())
	for i := range rv.Len() {
		out[i] = rv.Index(i).Addr().Interface()
	}
	return out
}
