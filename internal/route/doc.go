// Package route normalises request paths and matches them against the
// gateway's route table.
//
// A request path goes through [NormalizePath] once. Its result is the only
// path the gateway uses afterwards: routes are matched against it, policies
// see it, and the upstream receives it. There is no second, differently
// decoded copy an attacker could make disagree with the first
// ("/public/../admin" is "/admin" for everyone).
//
// A [Table] is compiled once per configuration by [Compile] and is then
// read-only; [Table.Match] does not allocate.
//
// The package works on host, method and path values and does not import
// net/http (internal/deptest checks this).
package route
