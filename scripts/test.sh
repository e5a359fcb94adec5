#!/usr/bin/env bash
# The whole suite: type checks, unit and integration tests (PGlite and PostgreSQL), then the built console
# in Debian's Chromium. Sets up whatever is missing first; uses TEST_DATABASE_URL when given, otherwise
# starts a throwaway PostgreSQL server on loopback for the run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
flotilla_bootstrap --system

missing=()
[ -x /usr/bin/chromium ] || missing+=("chromium (/usr/bin/chromium)")
[ -n "${TEST_DATABASE_URL:-}" ] || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=("postgresql")
if [ "${#missing[@]}" -gt 0 ]; then
	flotilla_say "missing: ${missing[*]}. Run this as root on Debian to install them, or install them yourself."
	exit 1
fi

if [ -z "${TEST_DATABASE_URL:-}" ]; then
	pgdir="$(mktemp -d /tmp/flotilla-pg.XXXXXX)"
	trap 'scripts/throwaway-postgres.sh stop "$pgdir"' EXIT
	TEST_DATABASE_URL="$(scripts/throwaway-postgres.sh start "$pgdir")"
	export TEST_DATABASE_URL
	flotilla_say "throwaway PostgreSQL at $TEST_DATABASE_URL"
fi

flotilla_say "formatting, lint (ESLint) and type checks"
npm run lint
npm run check
flotilla_say "unit and integration tests"
npx vitest run
flotilla_say "build"
npm run build
flotilla_say "browser and HTTP tests against the built console"
npx playwright test
