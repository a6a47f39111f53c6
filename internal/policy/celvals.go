package policy

import (
	"net/url"
	"reflect"
	"strings"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"

	"github.com/ztgate/ztgate/internal/identity"
)

// lazyMap is a CEL map whose entries are computed when read, so an
// expression pays only for the fields it uses.
type lazyMap interface {
	ref.Val
	traits.Mapper
}

// fields is the shared part of the lazy maps: keys and a lookup.
type fields struct {
	keys []string
	find func(key string) (ref.Val, bool)
}

func (f fields) get(key ref.Val) ref.Val {
	k, ok := key.(types.String)
	if !ok {
		return types.NewErr("no such key: %v", key)
	}
	if v, ok := f.find(string(k)); ok {
		return v
	}
	return types.NewErr("no such key: %s", k)
}

func (f fields) toNative() map[string]any {
	m := make(map[string]any, len(f.keys))
	for _, k := range f.keys {
		if v, ok := f.find(k); ok {
			m[k] = v.Value()
		}
	}
	return m
}

// objectMap implements lazyMap over fields.
type objectMap struct {
	fields
	native any // what Value returns (the Go object behind the map)
}

var _ lazyMap = objectMap{}

func (m objectMap) Contains(key ref.Val) ref.Val {
	_, ok := m.Find(key)
	return types.Bool(ok)
}
func (m objectMap) Get(key ref.Val) ref.Val { return m.get(key) }
func (m objectMap) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return nil, false
	}
	return m.find(string(k))
}
func (m objectMap) Iterator() traits.Iterator {
	return types.NewStringList(types.DefaultTypeAdapter, m.keys).Iterator()
}
func (m objectMap) Size() ref.Val { return types.Int(len(m.keys)) }
func (m objectMap) ConvertToNative(t reflect.Type) (any, error) {
	return types.DefaultTypeAdapter.NativeToValue(m.toNative()).ConvertToNative(t)
}
func (m objectMap) ConvertToType(t ref.Type) ref.Val {
	if t == types.MapType {
		return m
	}
	if t == types.TypeType {
		return types.MapType
	}
	return types.NewErr("no conversion of map to %s", t.TypeName())
}
func (m objectMap) Equal(o ref.Val) ref.Val { return types.Bool(false) }
func (m objectMap) Type() ref.Type          { return types.MapType }
func (m objectMap) Value() any              { return m.native }

var identityKeys = []string{"type", "subject", "tenant", "object_id", "app_id", "name", "issuer", "provider", "roles", "scopes", "groups", "amr", "acrs", "claims", "workload"}

func strList(s []string) ref.Val { return types.NewStringList(types.DefaultTypeAdapter, s) }

func identityVal(id *identity.Identity) ref.Val {
	if id == nil {
		id = &identity.Identity{}
	}
	return objectMap{native: id, fields: fields{keys: identityKeys, find: func(k string) (ref.Val, bool) {
		switch k {
		case "type":
			return types.String(id.Type), true
		case "subject":
			return types.String(id.Subject), true
		case "tenant":
			return types.String(id.Tenant), true
		case "object_id":
			return types.String(id.ObjectID), true
		case "app_id":
			return types.String(id.AppID), true
		case "name":
			return types.String(id.Name), true
		case "issuer":
			return types.String(id.Issuer), true
		case "provider":
			return types.String(id.Provider), true
		case "roles":
			return strList(id.Roles), true
		case "scopes":
			return strList(id.Scopes), true
		case "groups":
			if id.GroupsUnknown {
				return types.WrapErr(errGroupsUnknown), true
			}
			return strList(id.Groups), true
		case "amr":
			return strList(id.AMR), true
		case "acrs":
			return strList(id.ACRS), true
		case "claims":
			c := id.Claims
			if c == nil {
				c = map[string]any{}
			}
			return types.DefaultTypeAdapter.NativeToValue(c), true
		case "workload":
			return workloadVal(id.ClientCert), true
		}
		return nil, false
	}}}
}

var workloadKeys = []string{"id", "source", "trust_domain", "path", "serial", "issuer", "fingerprint"}

// workloadVal is the workload of the request's verified client
// certificate; without one every field is "".
func workloadVal(cc *identity.ClientCert) ref.Val {
	if cc == nil {
		cc = &identity.ClientCert{}
	}
	return objectMap{native: cc, fields: fields{keys: workloadKeys, find: func(k string) (ref.Val, bool) {
		switch k {
		case "id":
			return types.String(cc.ID), true
		case "source":
			return types.String(cc.Source), true
		case "trust_domain":
			return types.String(cc.TrustDomain), true
		case "path":
			return types.String(cc.Path), true
		case "serial":
			return types.String(cc.Serial), true
		case "issuer":
			return types.String(cc.Issuer), true
		case "fingerprint":
			return types.String(cc.Fingerprint), true
		}
		return nil, false
	}}}
}

var requestKeys = []string{"method", "host", "path", "params", "query", "headers", "ip"}

func requestVal(in *Input) ref.Val {
	r := &in.Request
	return objectMap{native: r, fields: fields{keys: requestKeys, find: func(k string) (ref.Val, bool) {
		switch k {
		case "method":
			return types.String(r.Method), true
		case "host":
			return types.String(r.Host), true
		case "path":
			return types.String(r.Path), true
		case "ip":
			if !in.IP.IsValid() {
				return types.String(""), true
			}
			return types.String(in.IP.String()), true
		case "params":
			p := r.Params
			if p == nil {
				p = map[string]string{}
			}
			return types.DefaultTypeAdapter.NativeToValue(p), true
		case "query":
			q := map[string]string{}
			if v, err := url.ParseQuery(r.RawQuery); err == nil {
				for k, vs := range v {
					q[k] = vs[0]
				}
			}
			return types.DefaultTypeAdapter.NativeToValue(q), true
		case "headers":
			return headerVal(r.Headers), true
		}
		return nil, false
	}}}
}

// headerVal reads headers by lower-case name, first value only.
func headerVal(h map[string][]string) ref.Val {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, strings.ToLower(k))
	}
	return objectMap{native: h, fields: fields{keys: keys, find: func(k string) (ref.Val, bool) {
		v, ok := h[canonicalHeader(k)]
		if !ok || len(v) == 0 {
			return nil, false
		}
		return types.String(v[0]), true
	}}}
}

// canonicalHeader is textproto's canonical form for ASCII names, without
// importing net/http or net/textproto.
func canonicalHeader(k string) string {
	b := []byte(k)
	upper := true
	for i, c := range b {
		if upper && c >= 'a' && c <= 'z' {
			b[i] = c - 32
		} else if !upper && c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
		upper = c == '-'
	}
	return string(b)
}
