#!/usr/bin/env bash
# bench/micro.sh: the Go micro-benchmarks of the request path (route
# matching, policy evaluation, token verification, the local rate limiter),
# each run 6 times and summarised by benchstat (medians with confidence
# intervals). The raw output goes to bench/results/micro.txt and the summary
# into bench/RESULTS.md.
#
#   bench/micro.sh              run, summarise, write
#   bench/micro.sh OLD.txt      also compare with an earlier raw output
#                               (for instance git show HEAD~1:bench/results/micro.txt)
#   bench/micro.sh --no-write   print only
#
# BENCH_COUNT changes the number of runs (default 6).
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../scripts/lib.sh
source "$BENCH/../scripts/lib.sh" # log, die; cd to the root

BENCHSTAT=golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
COUNT=${BENCH_COUNT:-6}
WRITE=1
OLD=
for arg in "$@"; do
	case $arg in
	--no-write) WRITE=0 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' && exit 0 ;;
	*)
		[[ -f $arg ]] || die "no such file: $arg"
		OLD=$(realpath "$arg")
		;;
	esac
done

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
RAW=$WORK/micro.txt

log "go test -bench, $COUNT runs each"
go test -run '^$' -bench . -benchmem -count "$COUNT" ./internal/route ./internal/policy ./internal/authn | tee "$RAW"
# The limits package also measures the Redis limiter, which needs a
# redis-server and measures Redis; the local limiter is the request path.
go test -run '^$' -bench 'Local' -benchmem -count "$COUNT" ./internal/limits | tee -a "$RAW"
# Off the request path or beside it: response masking (MB/s), identity
# assertions, the detector (events/s, bounded state), the audit event's
# encoding and chaining, the audit writer (events/s into SQLite and a real
# PostgreSQL, zero loss checked), and the whole request path in one process.
PKGS_MORE="./internal/dlp ./internal/inject ./internal/detect ./internal/audit ./internal/store ./internal/node"
# shellcheck disable=SC2086
go test -run '^$' -bench . -benchmem -count "$COUNT" $PKGS_MORE | tee -a "$RAW"

SUMMARY=$WORK/summary.md
{
	echo "Run of $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) CPU(s), $(sed -n '/^model name/{s/^model name[[:space:]]*: //p;q}' /proc/cpuinfo)," \
		"Linux $(uname -r), $(go version | cut -d' ' -f3); benchstat from golang.org/x/perf ${BENCHSTAT##*@}."
	echo
	echo '```sh'
	echo "go test -run '^\$' -bench . -benchmem -count $COUNT ./internal/route ./internal/policy ./internal/authn"
	echo "go test -run '^\$' -bench Local -benchmem -count $COUNT ./internal/limits"
	echo "go test -run '^\$' -bench . -benchmem -count $COUNT $PKGS_MORE"
	echo "go run $BENCHSTAT bench/results/micro.txt"
	echo '```'
	echo
	echo '```'
	go run "$BENCHSTAT" "$RAW"
	echo '```'
	if [[ -n $OLD ]]; then
		echo
		echo "Compared with $(basename "$OLD"):"
		echo
		echo '```'
		go run "$BENCHSTAT" old="$OLD" new="$RAW"
		echo '```'
	fi
} >"$SUMMARY"
cat "$SUMMARY"

if [[ $WRITE -eq 1 ]]; then
	mkdir -p "$BENCH/results"
	cp "$RAW" "$BENCH/results/micro.txt"
	awk -v summary="$SUMMARY" '
		/<!-- bench\/micro.sh:begin -->/ { print; while ((getline line < summary) > 0) print line; skip = 1; next }
		/<!-- bench\/micro.sh:end -->/ { skip = 0 }
		!skip' "$BENCH/RESULTS.md" >"$WORK/RESULTS.md"
	grep -q '<!-- bench/micro.sh:begin -->' "$WORK/RESULTS.md" || die "bench/RESULTS.md has no <!-- bench/micro.sh:begin --> marker"
	cp "$WORK/RESULTS.md" "$BENCH/RESULTS.md"
	log "wrote bench/results/micro.txt and bench/RESULTS.md"
fi
