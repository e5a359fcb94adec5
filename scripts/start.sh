#!/usr/bin/env bash
# The quick start: a working console on the embedded database, nothing else to set up.
# Builds when the sources changed since the last build, then serves on http://localhost:${PORT:-3000}.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
flotilla_bootstrap

stamp=build/.flotilla-build-stamp
if [ ! -f "$stamp" ] || [ -n "$(find src static drizzle package-lock.json svelte.config.js vite.config.ts -newer "$stamp" -print -quit)" ]; then
	flotilla_say "building the console"
	npm run build >&2
	touch "$stamp"
fi

export PORT="${PORT:-3000}"
export HOST="${HOST:-127.0.0.1}"
# Idle kept-alive connections outlive clients' and proxies' own (60 s is common), so the console never closes
# one a client is about to reuse.
export KEEP_ALIVE_TIMEOUT="${KEEP_ALIVE_TIMEOUT:-65}"
# Browsers' origin must match ORIGIN for form posts to pass SvelteKit's cross-site check.
export ORIGIN="${ORIGIN:-http://localhost:$PORT}"
if [ -z "${DATABASE_URL:-}" ]; then
	flotilla_say "embedded database in ${FLOTILLA_DATA_DIR:-./data}/pglite (set DATABASE_URL for PostgreSQL)"
	# The quick start comes with a simulated demo fleet; FLOTILLA_DEMO=0 starts an empty console.
	export FLOTILLA_DEMO="${FLOTILLA_DEMO:-1}"
fi
flotilla_say "open $ORIGIN — the first visit asks you to create the admin account"
# `npm run serve`'s node flags (README, "Production"): a larger request head, and PGlite's WebAssembly kept on
# V8's baseline compiler.
# shellcheck disable=SC2046 # the flags are words of their own
exec node $(node scripts/serve-flags.mjs) build
