import { createHash } from 'node:crypto';
import { connect, type ConnectOptions, type SshConnection, type SshTarget } from './connection';
import { sh } from './shell';

/**
 * Warm connections: a node's verified session, kept open for a short idle time after a check or a task ends,
 * so that the task that follows (an Update All right after the health sweep, the next stage of a rollout) does
 * not pay a TCP connect, key exchange and login of its own (docs/development.md, "Warm sessions").
 *
 * A warm session is only ever handed to a caller whose target is the same in every part that was verified: host,
 * port, user, credential, pinned host key, bastion. A re-pinned key, a rotated credential or an edited address
 * is another target, and gets a new session. Checks never take one (they prove a handshake works now); they only
 * leave theirs behind.
 */

export interface WarmSettings {
	/** How long an idle session stays open (0: none is kept). */
	idleMs: number;
	/** Idle sessions kept at most, across all nodes; the one idle longest closes first. */
	max: number;
}

/** Like ansible's ControlPersist (60 s): long enough for the run that follows a sweep or a check. */
export const DEFAULT_WARM: WarmSettings = { idleMs: 60_000, max: 200 };
/** How long a warm session may take to answer before it is given up for a new one. */
const PROBE_DEADLINE_MS = 5_000;

let settings = DEFAULT_WARM;
/** Idle sessions, each with its target's key; a Map keeps insertion order: the first are the ones idle longest. */
const idle = new Map<SshConnection, { key: string; timer: NodeJS.Timeout }>();
/** The target each session was opened for, so that it goes back under the right key. */
const keys = new WeakMap<SshConnection, string>();

export function configureWarmConnections(s: WarmSettings): void {
	settings = s;
	while (idle.size > Math.max(0, s.max)) closeOldest();
}

/** The identity of a target: everything the session was verified or authenticated with. */
function keyOf(t: SshTarget): string {
	const parts = [t.host, t.port, t.username, t.hostKeyFingerprint, t.privateKey, t.passphrase, t.jump && keyOf(t.jump)];
	return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
}

/**
 * A session to `target`: a warm one when one is idle and still answers, else a new one. `fresh` always opens a
 * new one (a check: the node must present its pinned key in a handshake now).
 */
export async function openConnection(
	target: SshTarget,
	options: ConnectOptions = {},
	{ fresh = false }: { fresh?: boolean } = {}
): Promise<SshConnection> {
	// Off: no target's key to compute on every task's way to its node; keepWarm closes it.
	if (settings.idleMs <= 0) return connect(target, options);
	const key = keyOf(target);
	for (let warm = fresh ? undefined : takeIdle(key); warm; warm = takeIdle(key)) {
		if (await answers(warm)) return warm;
		warm.close();
	}
	const conn = await connect(target, options);
	keys.set(conn, key);
	return conn;
}

/**
 * Whether a warm session still answers. One can die without a word (a link that dropped silently: keepalive
 * tells only within 30 s; an sshd that hangs): one command through its runner, a round trip with no sshd fork,
 * proves it before a task relies on it. Waited for at most PROBE_DEADLINE_MS, whatever the command does.
 */
async function answers(conn: SshConnection): Promise<boolean> {
	let timer: NodeJS.Timeout | undefined;
	const probe = conn.exec(sh`true`, { deadlineMs: PROBE_DEADLINE_MS }).then(
		(r) => r.exitCode === 0,
		() => false
	);
	const late = new Promise<false>((r) => (timer = setTimeout(() => r(false), PROBE_DEADLINE_MS)));
	const answered = await Promise.race([probe, late]);
	clearTimeout(timer);
	return answered && !conn.closed;
}

/**
 * Ends a caller's use of a session: kept warm when it is idle (no command or channel of the caller's left) and
 * settings allow, else closed. A caller whose work was cut short (cancelled, interrupted) closes it instead.
 */
export function keepWarm(conn: SshConnection): void {
	const key = keys.get(conn);
	if (!key || settings.idleMs <= 0 || settings.max <= 0 || !conn.idle) {
		conn.close();
		return;
	}
	const timer = setTimeout(() => drop(conn), settings.idleMs);
	// Idle sessions never keep the process alive; stopping the engine closes them (closeWarmConnections).
	timer.unref();
	idle.set(conn, { key, timer });
	while (idle.size > settings.max) closeOldest();
}

/** The most recently idle session for `key`, out of the pool (closed ones are dropped on the way). */
function takeIdle(key: string): SshConnection | undefined {
	let found: SshConnection | undefined;
	for (const [conn, entry] of idle) {
		if (conn.closed) drop(conn);
		else if (entry.key === key) found = conn;
	}
	if (found) {
		clearTimeout(idle.get(found)!.timer);
		idle.delete(found);
	}
	return found;
}

/** Out of the pool, and closed. */
function drop(conn: SshConnection): void {
	const entry = idle.get(conn);
	if (!entry) return;
	clearTimeout(entry.timer);
	idle.delete(conn);
	conn.close();
}

function closeOldest(): void {
	const oldest = idle.keys().next();
	if (!oldest.done) drop(oldest.value);
}

/** Closes every idle session (the engine stopping; a test's end). */
export function closeWarmConnections(): void {
	for (const conn of [...idle.keys()]) drop(conn);
}

/** Idle sessions open now (for the metrics). */
export function warmConnectionCount(): number {
	return idle.size;
}
