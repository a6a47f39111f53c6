// Package guard checks requests before they reach an upstream: body size,
// media type, JSON shape and schema, required and forbidden headers, and
// allowed query parameters. Each refusal names the failed check.
package guard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path/filepath"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/ztgate/ztgate/internal/config"
)

// Failure is a refused request: Status is 400, 413 or 415.
type Failure struct {
	Status int
	Reason string
	Public string
}

func (f *Failure) Error() string { return f.Reason + ": " + f.Public }

// Guard is the compiled guard of one route.
type Guard struct {
	maxBody      int64
	contentTypes []string
	schema       *jsonschema.Schema
	maxDepth     int
	required     []string
	forbidden    []string
	allowedQuery []string // nil: any
}

// Compile builds a guard; baseDir resolves a relative schema path.
// defaultMaxBody applies when the guard sets none.
func Compile(g *config.Guard, baseDir string, defaultMaxBody int64) (*Guard, error) {
	out := &Guard{maxBody: defaultMaxBody, maxDepth: g.MaxJSONDepth, allowedQuery: g.AllowedQuery}
	if g.MaxBodyBytes > 0 {
		out.maxBody = g.MaxBodyBytes
	}
	for _, ct := range g.ContentTypes {
		out.contentTypes = append(out.contentTypes, strings.ToLower(ct))
	}
	for _, h := range g.RequiredHeaders {
		out.required = append(out.required, http.CanonicalHeaderKey(h))
	}
	for _, h := range g.ForbiddenHeaders {
		out.forbidden = append(out.forbidden, http.CanonicalHeaderKey(h))
	}
	if g.JSONSchema != "" {
		path := g.JSONSchema
		if !filepath.IsAbs(path) {
			path = filepath.Join(baseDir, path)
		}
		c := jsonschema.NewCompiler()
		s, err := c.Compile(path)
		if err != nil {
			return nil, fmt.Errorf("json_schema %s: %w", g.JSONSchema, err)
		}
		out.schema = s
	}
	return out, nil
}

// MaxBody is the largest body the route accepts.
func (g *Guard) MaxBody() int64 { return g.maxBody }

// CheckHead checks what can be checked before reading the body.
func (g *Guard) CheckHead(r *http.Request) *Failure {
	for _, h := range g.required {
		if r.Header.Get(h) == "" {
			return &Failure{400, "missing_required_header", "the header " + h + " is required"}
		}
	}
	for _, h := range g.forbidden {
		if _, ok := r.Header[h]; ok {
			return &Failure{400, "forbidden_header", "the header " + h + " is not allowed"}
		}
	}
	if g.allowedQuery != nil && r.URL.RawQuery != "" {
		for k := range r.URL.Query() {
			if !slices.Contains(g.allowedQuery, k) {
				return &Failure{400, "query_parameter_not_allowed", fmt.Sprintf("the query parameter %q is not allowed", k)}
			}
		}
	}
	if r.ContentLength > g.maxBody {
		return &Failure{413, "body_too_large", fmt.Sprintf("request body larger than %d bytes", g.maxBody)}
	}
	hasBody := r.ContentLength > 0 || (r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody)
	if hasBody && len(g.contentTypes) > 0 {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || !slices.Contains(g.contentTypes, strings.ToLower(mt)) {
			return &Failure{415, "unsupported_content_type", "the request body must be one of: " + strings.Join(g.contentTypes, ", ")}
		}
	}
	return nil
}

// NeedsBody reports whether CheckBody must read the body.
func (g *Guard) NeedsBody() bool { return g.schema != nil }

// CheckBody reads the whole body (bounded), validates it and returns it for
// forwarding.
func (g *Guard) CheckBody(body io.Reader) ([]byte, *Failure) {
	data, err := io.ReadAll(io.LimitReader(body, g.maxBody+1))
	if err != nil {
		return nil, &Failure{400, "body_unreadable", "the request body could not be read"}
	}
	if int64(len(data)) > g.maxBody {
		return nil, &Failure{413, "body_too_large", fmt.Sprintf("request body larger than %d bytes", g.maxBody)}
	}
	if f := checkJSONShape(data, g.maxDepth); f != nil {
		return nil, f
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, &Failure{400, "invalid_json", "the request body is not valid JSON"}
	}
	if err := g.schema.Validate(v); err != nil {
		var ve *jsonschema.ValidationError
		msg := "the request body does not match the schema"
		if errors.As(err, &ve) {
			msg += ": " + firstCause(ve)
		}
		return nil, &Failure{400, "schema_violation", msg}
	}
	return data, nil
}

func firstCause(ve *jsonschema.ValidationError) string {
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	loc := "/" + strings.Join(ve.InstanceLocation, "/")
	return fmt.Sprintf("at %s: %s", loc, ve.ErrorKind.LocalizedString(english))
}

var english = message.NewPrinter(language.English)

// maxNumberLen bounds a JSON number literal (huge numbers cost time to parse
// and can overflow upstream parsers).
const maxNumberLen = 64

// checkJSONShape refuses malformed JSON, trailing data, nesting deeper than
// maxDepth and overlong numbers, before any schema work.
func checkJSONShape(data []byte, maxDepth int) *Failure {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	depth, values := 0, 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return &Failure{400, "invalid_json", "the request body is not valid JSON"}
		}
		if depth == 0 {
			if values++; values > 1 {
				return &Failure{400, "invalid_json", "trailing data after the JSON body"}
			}
		}
		switch t := tok.(type) {
		case json.Delim:
			if t == '{' || t == '[' {
				depth++
				if depth > maxDepth {
					return &Failure{400, "json_too_deep", fmt.Sprintf("the JSON body nests deeper than %d levels", maxDepth)}
				}
			} else {
				depth--
			}
		case json.Number:
			if len(t) > maxNumberLen {
				return &Failure{400, "json_number_too_large", fmt.Sprintf("a JSON number is longer than %d characters", maxNumberLen)}
			}
		}
	}
	if depth != 0 || values == 0 {
		return &Failure{400, "invalid_json", "the request body is not valid JSON"}
	}
	return nil
}

// ValidateConfig compiles every route's guard and reports the failures,
// positioned in the configuration file.
func ValidateConfig(cfg *config.Config) error {
	var errs config.Errors
	for i, s := range cfg.Services {
		for j, r := range s.Routes {
			if r.Guard == nil {
				continue
			}
			if _, err := Compile(r.Guard, filepath.Dir(cfg.File), s.MaxBodyBytes); err != nil {
				path := fmt.Sprintf("services[%d].routes[%d].guard.json_schema", i, j)
				p := cfg.PosOf(path)
				errs = append(errs, &config.Error{File: cfg.File, Line: p.Line, Column: p.Column, Path: path, Msg: err.Error()})
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}
