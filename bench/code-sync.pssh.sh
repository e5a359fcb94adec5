#!/bin/sh
# The code-sync flow (src/lib/server/codesync/flow.ts) for one git role as one shell script per host, for
# parallel-ssh in bench/code-sync.ts: the same commands in the same order, the same checks, and the same
# rollback when the switch, install, restart or health check fails. Read from stdin:
#   sh -s -- <target commit> <repo> <unit>
set -u
target=$1 repo=$2 unit=$3
# The role's health_timeout_seconds: probe once a second until healthy, at most this long.
health_timeout_seconds=30

healthy() {
	tries=1
	until systemctl is-active --quiet -- "$unit"; do
		[ "$tries" -lt "$health_timeout_seconds" ] || return 1
		tries=$((tries + 1))
		sleep 1
	done
}

dirty=$(git -C "$repo" status --porcelain) || exit 1
if [ -n "$dirty" ]; then
	echo "$repo has uncommitted changes (dirty tree); not touching it" >&2
	exit 1
fi
previous=$(git -C "$repo" rev-parse HEAD) || exit 1
# The flow's fetch step makes two attempts, 2 s apart.
git -C "$repo" fetch --quiet origin || { sleep 2 && git -C "$repo" fetch --quiet origin; } || exit 1

rollback() {
	echo "$1; going back to $previous" >&2
	git -C "$repo" checkout --quiet --detach "$previous" &&
		(cd -- "$repo" && sh install.sh) &&
		systemctl restart -- "$unit" &&
		healthy || echo "the rollback failed too" >&2
	exit 1
}

git -C "$repo" checkout --quiet --detach "$target" || rollback "checkout failed"
head=$(git -C "$repo" rev-parse HEAD) || rollback "rev-parse failed"
case $head in "$target"*) ;; *) rollback "HEAD is $head after checking out $target" ;; esac
(cd -- "$repo" && sh install.sh) || rollback "install failed"
systemctl restart -- "$unit" || rollback "restart failed"
healthy || rollback "$unit is unhealthy after $health_timeout_seconds s"
echo "updated to $head"
