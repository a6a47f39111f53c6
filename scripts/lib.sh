# shellcheck shell=bash
# Shared by scripts/test and scripts/fuzz: installs, step timing, fuzz discovery.
# Source it; it changes to the repository root.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Debian packages the tests need. Later work adds to this list
# (redis-server, postgresql, rsyslog, wrk, ...); each is installed only when missing.
APT_PACKAGES=(
	ca-certificates
	redis-server # rate limits shared between gateway nodes (test/e2e/redis_test.go)
	postgresql   # the PostgreSQL store (internal/store/pgtest starts one per test binary)
	sqlite3      # tampering with the audit store in test/e2e (TestAuditTrail)
	rsyslog        # the syslog CEF exporter's receiver (internal/audit/export TestSyslogCEFToRsyslog)
	rsyslog-gnutls # its TLS input
)

# Directories holding a package.json whose node_modules the tests need.
NPM_DIRS=(
	test/e2e/oidc
)

# Go tools, pinned, installed into .tools/bin (gitignored).
STATICCHECK_VERSION=v0.8.2 # staticcheck 2026.2.2, needs Go 1.26
GOVULNCHECK_VERSION=v1.8.0 # v1.9.0 needs an x/telemetry version the module proxy refuses
TOOLS_BIN="$ROOT/.tools/bin"

log() { printf '%s\n' "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# as_root runs a command as root, through sudo when we are not root.
as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		die "need root (or sudo) to run: $*"
	fi
}

install_apt_packages() {
	local missing=() pkg
	for pkg in "${APT_PACKAGES[@]}"; do
		if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
			missing+=("$pkg")
		fi
	done
	if [[ ${#missing[@]} -eq 0 ]]; then
		log "apt: all present (${APT_PACKAGES[*]})"
		return 0
	fi
	log "apt: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	as_root apt-get update -q
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# install_npm_dir runs npm ci (or npm install without a lock file) in $1 when
# node_modules is missing or older than the lock file.
install_npm_dir() {
	local dir=$1
	[[ -f $dir/package.json ]] || return 0
	command -v npm >/dev/null || die "$dir/package.json needs npm, which is not installed"
	if [[ -f $dir/package-lock.json ]]; then
		if [[ ! -d $dir/node_modules || $dir/package-lock.json -nt $dir/node_modules ]]; then
			log "npm: npm ci in $dir"
			(cd "$dir" && npm ci --no-audit --no-fund)
			touch "$dir/node_modules"
		else
			log "npm: $dir/node_modules is up to date"
		fi
	elif [[ ! -d $dir/node_modules || $dir/package.json -nt $dir/node_modules ]]; then
		log "npm: npm install in $dir (no package-lock.json)"
		(cd "$dir" && npm install --no-audit --no-fund)
		touch "$dir/node_modules"
	else
		log "npm: $dir/node_modules is up to date"
	fi
}

install_npm_packages() {
	local dir
	for dir in "${NPM_DIRS[@]}"; do
		install_npm_dir "$dir"
	done
}

# install_go_tool BINARY MODULE_PATH VERSION VERSION_CHECK_ARGS...
# Installs MODULE_PATH@VERSION into .tools/bin unless the binary there
# already reports VERSION.
install_go_tool() {
	local bin=$1 pkg=$2 version=$3
	shift 3
	if [[ -x $TOOLS_BIN/$bin ]] && "$TOOLS_BIN/$bin" "$@" 2>&1 | grep -qF -- "${version#v}"; then
		log "go: $bin $version present"
		return 0
	fi
	log "go: installing $pkg@$version"
	mkdir -p "$TOOLS_BIN"
	GOBIN="$TOOLS_BIN" GOFLAGS= go install "$pkg@$version"
}

install_go_tools() {
	install_go_tool staticcheck honnef.co/go/tools/cmd/staticcheck "$STATICCHECK_VERSION" -version
	install_go_tool govulncheck golang.org/x/vuln/cmd/govulncheck "$GOVULNCHECK_VERSION" -version
}

# tool prints the path of a Go tool: .tools/bin first, then PATH.
tool() {
	if [[ -x $TOOLS_BIN/$1 ]]; then
		printf '%s\n' "$TOOLS_BIN/$1"
	elif command -v "$1" >/dev/null; then
		command -v "$1"
	else
		die "$1 is not installed; run without SKIP_INSTALL=1"
	fi
}

# fuzz_targets prints "DIR NAME" for every func Fuzz* in the repository's
# _test.go files, DIR relative to the root ("./internal/policy").
fuzz_targets() {
	local file name
	find . \( -name .git -o -name .tools -o -name node_modules -o -name testdata -o -name vendor \) -prune \
		-o -type f -name '*_test.go' -print | LC_ALL=C sort |
		while read -r file; do
			sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file" | while read -r name; do
				printf '%s %s\n' "$(dirname "$file")" "$name"
			done
		done
}

# Steps: run_step NAME COMMAND... runs COMMAND with errexit on, prints a
# header and the duration, and records the outcome for summary.
STEP_NAMES=()
STEP_TIMES=()
STEP_RESULTS=()
START_TIME=$SECONDS

run_step() {
	local name=$1 start rc
	shift
	printf '\n==> %s\n' "$name"
	start=$SECONDS
	set +e
	(
		set -e
		"$@"
	)
	rc=$?
	set -e
	local took=$((SECONDS - start))
	STEP_NAMES+=("$name")
	STEP_TIMES+=("$took")
	if [[ $rc -eq 0 ]]; then
		STEP_RESULTS+=(ok)
		printf -- '--- %s: ok (%ss)\n' "$name" "$took"
	else
		STEP_RESULTS+=(FAIL)
		printf -- '--- %s: FAIL (exit %s, %ss)\n' "$name" "$rc" "$took"
	fi
}

# summary prints every step's outcome and returns non-zero if any failed.
summary() {
	local i failed=0
	printf '\n==> summary\n'
	for i in "${!STEP_NAMES[@]}"; do
		printf '  %-4s %5ss  %s\n' "${STEP_RESULTS[$i]}" "${STEP_TIMES[$i]}" "${STEP_NAMES[$i]}"
		[[ ${STEP_RESULTS[$i]} == ok ]] || failed=$((failed + 1))
	done
	local total=$((SECONDS - START_TIME))
	if [[ $failed -eq 0 ]]; then
		printf 'all %d steps ok in %dm%02ds\n' "${#STEP_NAMES[@]}" $((total / 60)) $((total % 60))
	else
		printf '%d of %d steps FAILED in %dm%02ds\n' "$failed" "${#STEP_NAMES[@]}" $((total / 60)) $((total % 60))
		return 1
	fi
}
