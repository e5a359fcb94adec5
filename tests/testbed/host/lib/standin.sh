# Shared by the stand-ins in ../bin: each sources this file and calls `standin_begin "$@"` first.
# Every invocation is logged, so tests can see exactly what the engine ran, and then the faults that
# tests set in /etc/flotilla-testbed/faults are applied before the stand-in does its normal work.

name=$(basename "$0")
faults=/etc/flotilla-testbed/faults
state=/var/lib/flotilla-testbed

# fail-step, hang and drop-connection name the commands they hit, one per line; empty means every one.
fault_applies() {
	[ -f "$faults/$1" ] || return 1
	[ -s "$faults/$1" ] || return 0
	grep -qxF "$name" "$faults/$1"
}

# Kill the sshd processes that serve this session, so the client sees the connection drop as on a
# network cut. The listener (whose parent is the supervisor, pid 1) stays, so new connections work.
drop_connection() {
	pids=
	pid=$$
	while [ "$pid" -gt 1 ]; do
		read -r _ comm _ ppid _ <"/proc/$pid/stat"
		if [ "$comm" = "(sshd)" ] && [ "$ppid" -ne 1 ]; then pids="$pids $pid"; fi
		pid=$ppid
	done
	# Unquoted on purpose: one argument per pid.
	kill -KILL $pids
	exit 255
}

standin_begin() {
	echo "$(date +%s%3N) $name${*:+ $*}" >>"$state/commands.log"
	if fault_applies drop-connection; then drop_connection; fi
	# exec, so that a `timeout` around the command kills the sleep itself and leaves nothing behind.
	if fault_applies hang; then exec sleep infinity; fi
	if fault_applies fail-step; then
		echo "$name: failed (testbed fault fail-step)" >&2
		exit 1
	fi
	if [ -e "$faults/slow-output" ]; then
		i=1
		while [ "$i" -le 20 ]; do
			echo "$name: working ($i/20)"
			sleep 0.2
			i=$((i + 1))
		done
	fi
}
