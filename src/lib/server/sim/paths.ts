/**
 * Where things are on a node, the same on testbed hosts (tests/testbed), simulated nodes and the real nodes
 * the flows manage, so a flow written against one runs unchanged on the others.
 */
export const nodePaths = {
	/** The certificate the node's TLS endpoint serves, its key, and the CA that issued it, all PEM. */
	tlsCert: '/etc/flotilla/tls/server.crt',
	tlsKey: '/etc/flotilla/tls/server.key',
	tlsCa: '/etc/flotilla/tls/ca.crt',
	/** The unit whose reload makes the TLS endpoint serve the files on disk. */
	tlsUnit: 'tls-endpoint',
	/** The appliance slot helper (appliance/flotilla-slot), also on PATH as `flotilla-slot`. */
	slotHelper: '/opt/flotilla/bin/flotilla-slot',
	slotDir: '/boot/flotilla',
	/** Debian's marker that a reboot is needed, and the packages that need it. */
	rebootRequired: '/var/run/reboot-required',
	rebootRequiredPackages: '/var/run/reboot-required.pkgs',
	/** The checkout of a role. */
	repo: (role: string) => `/opt/${role}`
} as const;
