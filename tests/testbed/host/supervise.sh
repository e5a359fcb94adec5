#!/bin/sh
# One test host. Runs as pid 1 of the host's own pid and mount namespaces (testbed.ts starts it under
# `unshare`), so killing it takes every process of the host with it, and `kill -1` from inside reaches
# exactly this host's processes. It mounts the host's directories over the paths a real host uses, runs
# sshd and the TLS listener, and when sshd goes away because the `reboot` stand-in killed everything, plays
# the boot: the appliance's own boot logic chooses a slot, and a boot that fails is retried the way a
# watchdog would, so that the slot helper's fallback after 3 failed boots really happens.
# Usage: sh supervise.sh <host dir> <address>
set -u
host=$1
address=$2
state=/var/lib/flotilla-testbed
faults=/etc/flotilla-testbed/faults
slots=/boot/flotilla

# /etc is the real machine's seen through an overlay whose changes are this host's own: an account useradd
# creates, a unit file in /etc/systemd/system, a role's /etc/<role> stay on this host (and off the machine).
mkdir -p "$host/etc-overlay/upper" "$host/etc-overlay/work"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$host/etc-overlay/upper,workdir=$host/etc-overlay/work" /etc || exit 1
# The mount namespace is private, so these mounts are seen by this host's processes only. /run (and so
# /var/run) is the host's own, as the tmpfs of a real host is: reboot-required lives there.
for path in /opt /etc/flotilla /etc/flotilla-testbed /var/lib/flotilla-testbed /boot /root /run; do
	mount --bind "$host$path" "$path" || exit 1
done
# sshd's privilege separation directory.
mkdir -p /run/sshd

# The TLS endpoint: openssl s_server with the certificate and key on disk, serving the files in $state/www
# over HTTPS. It reads the files only when it starts, so `systemctl reload tls-endpoint` (through the
# stand-in's hook) kills it and this loop starts it again on the current files, as a reload would.
tls_listener() {
	while :; do
		(cd "$state/www" && exec openssl s_server -quiet -WWW -accept "$address:8443" \
			-cert /etc/flotilla/tls/server.crt -key /etc/flotilla/tls/server.key) </dev/null &
		echo $! >"$state/tls-endpoint.pid"
		wait $!
		sleep 0.2
	done
}

# fail-boot names the slots whose boot fails, one per line; empty means every boot fails.
boot_fails() {
	if [ -f "$faults/fail-boot" ]; then
		[ -s "$faults/fail-boot" ] || return 0
		[ -n "$1" ] && grep -qxF "$1" "$faults/fail-boot" && return 0
	fi
	# No firmware boots an empty or missing image.
	[ -n "$1" ] && [ ! -s "$slots/slot-$1.img" ]
}

boot() {
	sleep 2
	while :; do
		slot=
		if [ -x /opt/flotilla/bin/flotilla-slot ]; then
			slot=$(/opt/flotilla/bin/flotilla-slot boot) || slot=
		fi
		if ! boot_fails "$slot"; then break; fi
		# A slot that is not committed yet gets more boots; the slot helper falls back after 3.
		if [ -n "$slot" ] && [ "$slot" != "$(cat "$slots/good")" ]; then
			echo "supervise: boot of slot $slot failed; booting again" >&2
			sleep 0.5
			continue
		fi
		if [ -f "$faults/fail-boot" ]; then
			echo "supervise: fail-boot fault set; host stays down" >&2
		else
			echo "supervise: slot $slot cannot boot; host stays down" >&2
		fi
		exit 1
	done
	# /run is a tmpfs on a real host: whatever asked for a reboot is gone after one.
	rm -f /run/reboot-required /run/reboot-required.pkgs
	# Every service starts afresh on the libraries now installed.
	rm -f "$state/apt/restart-services"
	# Installed by tests that need more boot-time logic.
	if [ -x /opt/flotilla-testbed/boot ]; then
		/opt/flotilla-testbed/boot || echo "supervise: boot hook exited $?" >&2
	fi
	echo $(($(cat "$state/boot-count" 2>/dev/null || echo 0) + 1)) >"$state/boot-count"
	# Beside the stand-ins' lines, so the command log tells when the host went down and when it was back.
	echo "$(date +%s%3N) (booted)" >>"$state/commands.log"
}

while :; do
	tls_listener &
	/usr/sbin/sshd -D -e -f "$host/etc/ssh/sshd_config"
	status=$?
	if [ ! -e "$state/reboot-requested" ]; then
		echo "supervise: sshd exited ($status) without a reboot request; host is down" >&2
		exit 1
	fi
	rm -f "$state/reboot-requested"
	boot
done
