package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"

	"github.com/ztgate/ztgate/internal/identity"
)

// Bounds on expressions: their length, and the cost of one evaluation
// (CEL's cost units; a comprehension over a long list is what this stops).
const (
	MaxExprBytes = 4096
	MaxExprCost  = 10000
)

// Reasons of a when expression.
const (
	ReasonWhenOK    = "when_ok"
	ReasonWhenFalse = "when_false"
	ReasonWhenError = "when_error"
)

var (
	envOnce sync.Once
	celEnv  *cel.Env
	envErr  error
)

// environment is the typed CEL environment of when expressions:
//
//	identity  map: type, subject, tenant, object_id, app_id, name, issuer,
//	          provider, roles, scopes, groups, amr, acrs, claims (every claim),
//	          workload (map: id, source, trust_domain, path, serial, issuer,
//	          fingerprint of the verified client certificate; "" without one)
//	request   map: method, host, path, params, query, headers (lower-case
//	          names, first value), ip
//	geo       map: country
//	time      timestamp of the request
//	risk      map: level, alerts
//
// and helpers: request.ip in cidr("10.0.0.0/8"), identity.hasRole(r),
// identity.hasScope(s), identity.inGroup(g), and CEL's string extensions.
func environment() (*cel.Env, error) {
	envOnce.Do(func() {
		celEnv, envErr = cel.NewEnv(
			cel.Variable("identity", cel.MapType(cel.StringType, cel.DynType)),
			cel.Variable("request", cel.MapType(cel.StringType, cel.DynType)),
			cel.Variable("geo", cel.MapType(cel.StringType, cel.DynType)),
			cel.Variable("risk", cel.MapType(cel.StringType, cel.DynType)),
			cel.Variable("time", cel.TimestampType),
			ext.Strings(),
			// cidr("10.0.0.0/8") is typed as a map so that CEL's own "in"
			// operator accepts it; at run time it is a set of addresses
			// whose Contains tests membership of an IP string.
			cel.Function("cidr",
				cel.Overload("cidr_string", []*cel.Type{cel.StringType}, cel.MapType(cel.StringType, cel.BoolType),
					cel.UnaryBinding(newCIDR))),
			memberListFunc("hasRole", "roles"),
			memberListFunc("hasScope", "scopes"),
			memberListFunc("inGroup", "groups"),
		)
	})
	return celEnv, envErr
}

func newCIDR(arg ref.Val) ref.Val {
	s, ok := arg.Value().(string)
	if !ok {
		return types.NewErr("cidr: want a string")
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return types.NewErr("cidr: bad CIDR %q", s)
	}
	return cidrVal{p.Masked()}
}

// cidrVal is an address range that CEL's "in" can test.
type cidrVal struct{ p netip.Prefix }

var _ traits.Container = cidrVal{}

func (c cidrVal) Contains(v ref.Val) ref.Val {
	s, ok := v.Value().(string)
	if !ok {
		return types.NewErr("in cidr: want an IP address string")
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return types.False
	}
	return types.Bool(c.p.Contains(a.Unmap()))
}

func (c cidrVal) ConvertToNative(reflect.Type) (any, error) { return c.p, nil }
func (c cidrVal) ConvertToType(t ref.Type) ref.Val {
	if t == types.StringType {
		return types.String(c.p.String())
	}
	return types.NewErr("cidr: no conversion to %s", t.TypeName())
}
func (c cidrVal) Equal(o ref.Val) ref.Val {
	oc, ok := o.(cidrVal)
	return types.Bool(ok && oc.p == c.p)
}
func (c cidrVal) Type() ref.Type { return types.MapType }
func (c cidrVal) Value() any     { return c.p }

// memberListFunc defines map.fn(string) -> bool: whether the list under key
// contains the value.
func memberListFunc(fn, key string) cel.EnvOption {
	return cel.Function(fn,
		cel.MemberOverload("map_"+fn+"_string", []*cel.Type{cel.MapType(cel.StringType, cel.DynType), cel.StringType}, cel.BoolType,
			cel.BinaryBinding(func(m, v ref.Val) ref.Val {
				id, ok := m.Value().(*identity.Identity)
				if !ok {
					return types.NewErr("%s: only identity.%s(...) is supported", fn, fn)
				}
				want, _ := v.Value().(string)
				var l []string
				switch key {
				case "roles":
					l = id.Roles
				case "scopes":
					l = id.Scopes
				case "groups":
					if id.GroupsUnknown {
						return types.WrapErr(errGroupsUnknown)
					}
					l = id.Groups
				}
				return types.Bool(slices.Contains(l, want))
			})))
}

// expr is a compiled when expression.
type expr struct {
	src string
	prg cel.Program
}

// CompileError is a when expression that does not compile; Line and Column
// are relative to the expression.
type CompileError struct {
	Line, Column int
	Msg          string
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("CEL line %d column %d: %s", e.Line, e.Column, e.Msg)
}

func compileExpr(src string) (*expr, error) {
	if len(src) > MaxExprBytes {
		return nil, fmt.Errorf("expression longer than %d bytes", MaxExprBytes)
	}
	env, err := environment()
	if err != nil {
		return nil, err
	}
	ast, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		errs := iss.Errors()
		if len(errs) > 0 {
			loc := errs[0].Location
			return nil, &CompileError{Line: loc.Line(), Column: loc.Column() + 1, Msg: errs[0].Message}
		}
		return nil, iss.Err()
	}
	if !ast.OutputType().IsExactType(cel.BoolType) && !ast.OutputType().IsExactType(cel.DynType) {
		return nil, &CompileError{Line: 1, Column: 1, Msg: fmt.Sprintf("the expression is of type %s; want bool", ast.OutputType())}
	}
	prg, err := env.Program(ast, cel.CostLimit(MaxExprCost), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	return &expr{src: src, prg: prg}, nil
}

// CheckExpr compiles a when expression and reports its error, if any.
func CheckExpr(src string) error {
	_, err := compileExpr(src)
	return err
}

// errGroupsUnknown is what the groups of a caller whose groups are unknown
// evaluate to. CEL carries the error through: an expression whose value
// depends on them errs and denies (groups_unknown); one that holds or fails
// regardless (a || b with a true) is decided as usual.
var errGroupsUnknown = errors.New("the caller's groups are unknown (group overage not resolved)")

// readsGroups reports whether an expression mentions groups.
func readsGroups(src string) bool {
	return strings.Contains(src, "groups") || strings.Contains(src, "inGroup")
}

func (e *expr) eval(in *Input, t *trace) bool {
	out, _, err := e.prg.Eval(&activation{in: in})
	if err != nil {
		if errors.Is(err, errGroupsUnknown) {
			t.unknown = true
			t.add(ReasonGroupsUnknown, "when", e.src, "cannot tell: "+err.Error())
			return false
		}
		t.add(ReasonWhenError, "when", e.src, "error: "+err.Error())
		return false
	}
	if b, ok := out.Value().(bool); ok && b {
		t.add(ReasonWhenOK, "when", e.src, "true")
		return true
	}
	t.add(ReasonWhenFalse, "when", e.src, fmt.Sprint(out.Value()))
	return false
}

// activation resolves the variables of an expression lazily: only what the
// expression reads is built.
type activation struct {
	in *Input
}

var _ interpreter.Activation = (*activation)(nil)

func (a *activation) ResolveName(name string) (any, bool) {
	in := a.in
	switch name {
	case "identity":
		return identityVal(in.Identity), true
	case "request":
		return requestVal(in), true
	case "geo":
		return map[string]any{"country": in.Country}, true
	case "risk":
		level := in.Risk.Level
		if level == "" {
			level = "none"
		}
		alerts := in.Risk.Alerts
		if alerts == nil {
			alerts = []string{}
		}
		return map[string]any{"level": level, "alerts": alerts}, true
	case "time":
		return in.Time, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }
