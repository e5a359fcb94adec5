#!/usr/bin/env bash
# A private PostgreSQL server for the tests, on loopback, in a folder of its own.
#
#   scripts/throwaway-postgres.sh start DIR   # prints the server's URL on stdout
#   scripts/throwaway-postgres.sh stop DIR    # stops it and removes DIR
#
# Uses Debian's server binaries (package postgresql). As root it runs the server as the `postgres` user,
# because PostgreSQL refuses to run as root. Durability is switched off: the data is thrown away anyway.
set -euo pipefail

cmd="${1:-}"
dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
[ -x "$bindir/pg_ctl" ] || { echo "PostgreSQL server binaries not found: install the Debian package postgresql" >&2; exit 1; }

as_owner() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
	mkdir -p "$dir"
	[ "$(id -u)" = 0 ] && chown postgres: "$dir"
	port="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
	as_owner "$bindir/initdb" -D "$dir/data" -U flotilla -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; exit 1; }
	as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
		-o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
		start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
	echo "postgres://flotilla@127.0.0.1:$port/postgres"
	;;
stop)
	if [ -d "$dir/data" ]; then as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; fi
	rm -rf "$dir"
	;;
*)
	echo "usage: $0 start|stop DIR" >&2
	exit 2
	;;
esac
