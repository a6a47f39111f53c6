package config

import (
	"encoding/json"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// Schema returns the JSON Schema (draft 2020-12) of the configuration file,
// generated from the same types the decoder fills, so the two cannot drift.
// Keys reserved for features this version does not support are left out.
func Schema() []byte {
	g := &schemaGen{defs: map[string]any{}}
	root := g.object(reflect.TypeFor[Config]())
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["$id"] = "https://ztgate.dev/schema/config.json"
	root["title"] = "ztgate configuration"
	root["$defs"] = g.defs
	out, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		panic(err)
	}
	return append(out, '\n')
}

type schemaGen struct {
	defs map[string]any
}

func (g *schemaGen) typeSchema(t reflect.Type) map[string]any {
	if t == templateType {
		return map[string]any{"type": "string"}
	}
	if t == durationType {
		return map[string]any{"type": "string", "pattern": `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$|^[0-9]+d$`}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.typeSchema(t.Elem())
	case reflect.Struct:
		name := t.Name()
		if _, ok := g.defs[name]; !ok {
			g.defs[name] = true // placeholder breaks recursion
			g.defs[name] = g.object(t)
		}
		return map[string]any{"$ref": "#/$defs/" + name}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": g.typeSchema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.typeSchema(t.Elem())}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int64:
		return map[string]any{"type": "integer", "minimum": 0}
	}
	return map[string]any{}
}

func (g *schemaGen) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	for _, f := range structInfoOf(t).fields {
		if f.unsupported {
			continue
		}
		s := g.typeSchema(f.typ)
		if f.doc != "" {
			if _, ref := s["$ref"]; ref {
				s = map[string]any{"allOf": []any{s}}
			}
			s["description"] = f.doc
		}
		if f.enum != nil {
			if s["type"] == "array" {
				s["items"] = map[string]any{"type": "string", "enum": f.enum}
			} else {
				s["enum"] = f.enum
			}
		}
		if f.def != "" {
			s["default"] = defaultValue(f)
		}
		if f.required {
			required = append(required, f.name)
		}
		props[f.name] = s
	}
	o := map[string]any{"type": "object", "additionalProperties": false, "properties": props}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}

func defaultValue(f field) any {
	switch {
	case f.typ == durationType:
		return f.def
	case f.typ.Kind() == reflect.String:
		return f.def
	case f.typ.Kind() == reflect.Slice:
		var v []string
		_ = yaml.Unmarshal([]byte(f.def), &v)
		return v
	default:
		var v any
		_ = yaml.Unmarshal([]byte(f.def), &v)
		return v
	}
}

// Reference renders a Markdown reference of every key: path, type, default
// and description. The README's configuration section is this text; a test
// keeps the two equal.
func Reference() string {
	var b strings.Builder
	b.WriteString("| key | type | default | description |\n|---|---|---|---|\n")
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for _, f := range structInfoOf(t).fields {
			if f.unsupported {
				continue
			}
			key := prefix + f.name
			ft := f.typ
			typ := typeName(ft)
			def := f.def
			if f.enum != nil {
				typ += " (" + strings.Join(f.enum, " \\| ") + ")"
			}
			req := ""
			if f.required {
				req = " Required."
			}
			b.WriteString("| `" + key + "` | " + typ + " | " + code(def) + " | " + f.doc + req + " |\n")
			for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
				if ft.Kind() == reflect.Slice {
					key += "[]"
				}
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != durationType && ft != templateType {
				if seen[ft] {
					continue // recursive rules: documented once
				}
				seen[ft] = true
				walk(ft, key+".")
				delete(seen, ft)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return b.String()
}

func code(s string) string {
	if s == "" {
		return ""
	}
	return "`" + s + "`"
}

func typeName(t reflect.Type) string {
	if t == durationType {
		return "duration"
	}
	if t == templateType {
		return "string"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeName(t.Elem())
	case reflect.Slice:
		return "list of " + typeName(t.Elem())
	case reflect.Map:
		return "map of " + typeName(t.Elem())
	case reflect.Struct:
		return "object"
	case reflect.Int, reflect.Int64:
		return "integer"
	case reflect.Bool:
		return "boolean"
	}
	return t.Kind().String()
}
