#!/usr/bin/env bash
# bench/peers/oathkeeper.sh CONFIG: Ory Oathkeeper as a bench/run peer (see
# README.md). The binary is OATHKEEPER_BIN, built outside this repository.
# The access rules (oathkeeper-rules.json beside this script, or
# OATHKEEPER_RULES) are filled in from BENCH_LISTEN and BENCH_UPSTREAM, as
# bench/run fills in CONFIG, written beside CONFIG, and given to Oathkeeper
# as a second configuration file that names them.
set -euo pipefail
bin=${OATHKEEPER_BIN:-/tmp/peers/bin/oathkeeper}
rules=${OATHKEEPER_RULES:-$(dirname "${BASH_SOURCE[0]}")/oathkeeper-rules.json}
[[ $# -eq 1 ]] || { echo "usage: $0 CONFIG" >&2; exit 2; }
[[ -x $bin ]] || { echo "error: no Oathkeeper binary at $bin (set OATHKEEPER_BIN; bench/peers/README.md says how to build it)" >&2; exit 1; }
[[ -n ${BENCH_LISTEN:-} && -n ${BENCH_UPSTREAM:-} ]] || { echo "error: BENCH_LISTEN and BENCH_UPSTREAM must be set (bench/run sets them)" >&2; exit 1; }
dir=$(cd "$(dirname "$1")" && pwd)
sed -e "s|@LISTEN@|$BENCH_LISTEN|g" -e "s|@UPSTREAM@|$BENCH_UPSTREAM|g" "$rules" >"$dir/oathkeeper-rules.json"
printf 'access_rules:\n  repositories:\n    - file://%s\n' "$dir/oathkeeper-rules.json" >"$dir/oathkeeper-rules.yml"
# --sqa-opt-out: no usage reports to Ory (nor their middleware on the request path).
exec "$bin" serve --sqa-opt-out --config "$1" --config "$dir/oathkeeper-rules.yml"
