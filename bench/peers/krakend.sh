#!/usr/bin/env bash
# bench/peers/krakend.sh CONFIG: KrakenD CE as a bench/run peer (see README.md).
# The binary is KRAKEND_BIN, built outside this repository.
set -euo pipefail
bin=${KRAKEND_BIN:-/tmp/peers/bin/krakend}
[[ $# -eq 1 ]] || { echo "usage: $0 CONFIG" >&2; exit 2; }
[[ -x $bin ]] || { echo "error: no KrakenD binary at $bin (set KRAKEND_BIN; bench/peers/README.md says how to build it)" >&2; exit 1; }
exec "$bin" run -c "$1"
