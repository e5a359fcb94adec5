#!/bin/sh
# One test host. Runs as pid 1 of the host's own pid and mount namespaces (testbed.ts starts it under
# `unshare`), so killing it takes every process of the host with it, and `kill -1` from inside reaches
# exactly this host's processes. It mounts the host's directories over the paths a real host uses, runs
# sshd, and when sshd goes away because the `reboot` stand-in killed everything, plays the boot.
# Usage: sh supervise.sh <host dir>
set -u
host=$1
state=/var/lib/flotilla-testbed

# The mount namespace is private, so these mounts are seen by this host's processes only.
for path in /opt /etc/flotilla-testbed /var/lib/flotilla-testbed /boot /root; do
	mount --bind "$host$path" "$path" || exit 1
done
# sshd's privilege separation directory; /run is shared with the real machine on purpose.
mkdir -p /run/sshd

while :; do
	/usr/sbin/sshd -D -e -f "$host/etc/ssh/sshd_config"
	status=$?
	if [ ! -e "$state/reboot-requested" ]; then
		echo "supervise: sshd exited ($status) without a reboot request; host is down" >&2
		exit 1
	fi
	rm -f "$state/reboot-requested"
	# A real machine is unreachable for a while during a reboot; clients must cope with that.
	sleep 2
	if [ -e /etc/flotilla-testbed/faults/fail-boot ]; then
		echo "supervise: fail-boot fault set; host stays down" >&2
		exit 1
	fi
	# Installed by features that need boot-time logic (e.g. an appliance choosing its A/B slot).
	if [ -x /opt/flotilla-testbed/boot ]; then
		/opt/flotilla-testbed/boot || echo "supervise: boot hook exited $?" >&2
	fi
	echo $(($(cat "$state/boot-count" 2>/dev/null || echo 0) + 1)) >"$state/boot-count"
done
