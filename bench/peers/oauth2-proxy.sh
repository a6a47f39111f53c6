#!/usr/bin/env bash
# bench/peers/oauth2-proxy.sh CONFIG: oauth2-proxy as a bench/run peer (see
# README.md). The binary is OAUTH2_PROXY_BIN, built outside this repository.
set -euo pipefail
bin=${OAUTH2_PROXY_BIN:-/tmp/peers/bin/oauth2-proxy}
[[ $# -eq 1 ]] || { echo "usage: $0 CONFIG" >&2; exit 2; }
[[ -x $bin ]] || { echo "error: no oauth2-proxy binary at $bin (set OAUTH2_PROXY_BIN; bench/peers/README.md says how to build it)" >&2; exit 1; }
exec "$bin" --config "$1"
