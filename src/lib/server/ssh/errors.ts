/**
 * Why talking to a node failed, in words an operator can act on. Every failure of the SSH layer is one of
 * these; none of them crashes the console.
 */
export type SshFailure =
	| 'unreachable' // refused, no route, DNS: nothing answers
	| 'timeout' // something answered but the SSH handshake did not finish in time
	| 'host_key_unknown' // the node's key is not pinned yet: an admin must accept its fingerprint
	| 'host_key_changed' // the node presents another key than the pinned one: refuse, alert
	| 'auth' // the node refused our credential
	| 'disconnected' // the connection dropped while in use
	| 'integrity' // a transferred file's checksum did not match
	| 'protocol'; // anything else the SSH library reported

export class SshError extends Error {
	constructor(
		readonly failure: SshFailure,
		message: string,
		/** The fingerprint the node presented, for host key failures. */
		readonly fingerprint?: string
	) {
		super(message);
		this.name = 'SshError';
	}
}

/** Classifies an error from ssh2 or from the socket beneath it. */
export function classifySshError(err: unknown, target: string): SshError {
	if (err instanceof SshError) return err;
	const e = err as Error & { code?: string; level?: string };
	const code = e.code ?? '';
	if (['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL'].includes(code)) {
		return new SshError('unreachable', `${target} is unreachable (${code})`);
	}
	if (e.level === 'client-timeout' || /Timed out while waiting for handshake/i.test(e.message)) {
		return new SshError('timeout', `${target} did not complete the SSH handshake in time`);
	}
	if (e.level === 'client-authentication') {
		return new SshError('auth', `${target} refused the credential (${e.message})`);
	}
	if (code === 'ECONNRESET' || /Not connected|No response from server|socket/i.test(e.message)) {
		return new SshError('disconnected', `The connection to ${target} dropped (${e.message})`);
	}
	return new SshError('protocol', `SSH to ${target} failed: ${e.message}`);
}
