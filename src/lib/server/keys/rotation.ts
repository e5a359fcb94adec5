import { and, asc, desc, eq, inArray, or, sql } from 'drizzle-orm';
import { recordAudit, type Actor } from '$lib/server/audit';
import { db, type Database } from '$lib/server/db';
import {
	credentials,
	keyRotationNodes,
	keyRotations,
	nodes,
	type KeyRotation,
	type KeyRotationNode,
	type KeySurvey,
	type Node
} from '$lib/server/db/schema';
import { conflict, notFound, ServiceError } from '$lib/server/errors';
import type { RotateKeysInput } from '$lib/schemas/ssh-keys';
import { createCredential } from './credentials';
import { driveKeyRotation } from './driver';
import { connectWith } from './login';
import { generateEd25519 } from './openssh';
import { surveyOf } from './phases';
import { connectionRunner, readAuthorizedKeys } from './remote';

/*
 * Starting a rotation of the console's SSH key (docs/ssh-key-rotation.md): its scope, the dry run, and K0 — the
 * new key pair and the safety-net pair, made and sealed in the console. The phases on the nodes are the
 * driver's (driver.ts).
 */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DRY_RUN_CONCURRENCY = 10;

export interface HostAccess {
	node: string;
	node_id: string;
	host: string;
	reachable: boolean;
	/** Why the console could not look, when it could not. */
	error: string | null;
	survey: KeySurvey | null;
}

async function resolveScope(input: RotateKeysInput): Promise<{ credentialId: string; scope: Node[] }> {
	let listed: Node[] | undefined;
	if (input.nodes) {
		const ids = input.nodes.filter((r) => UUID.test(r));
		const names = input.nodes.filter((r) => !UUID.test(r));
		const rows = await db()
			.select()
			.from(nodes)
			.where(
				or(ids.length ? inArray(nodes.id, ids) : undefined, names.length ? inArray(nodes.name, names) : undefined)
			);
		const missing = input.nodes.filter((r) => !rows.some((n) => n.id === r || n.name === r));
		if (missing.length) {
			throw new ServiceError('validation_failed', `Unknown node(s): ${missing.join(', ')}`, {
				nodes: `unknown node ${missing[0]}`
			});
		}
		listed = rows;
	}
	let credentialId = input.credential_id;
	if (credentialId) {
		const [c] = await db().select({ id: credentials.id }).from(credentials).where(eq(credentials.id, credentialId));
		if (!c)
			throw new ServiceError('validation_failed', 'There is no such credential', {
				credential_id: 'unknown credential'
			});
	} else {
		const pool = listed ?? (await db().select().from(nodes));
		const used = [...new Set(pool.map((n) => n.credentialId))];
		if (used.length !== 1) {
			throw new ServiceError(
				'validation_failed',
				used.length
					? 'These nodes use more than one credential: name the one to rotate'
					: 'No node uses a credential yet',
				used.length
					? { credential_id: `is required: the nodes use ${used.length} credentials` }
					: { nodes: 'no node to rotate' }
			);
		}
		credentialId = used[0]!;
	}
	const scope = listed
		? listed
		: await db().select().from(nodes).where(eq(nodes.credentialId, credentialId)).orderBy(asc(nodes.name));
	const strangers = scope.filter((n) => n.credentialId !== credentialId);
	if (strangers.length) {
		throw new ServiceError(
			'validation_failed',
			`${strangers.map((n) => n.name).join(', ')} sign(s) in with another credential`,
			{
				nodes: `${strangers[0]!.name} does not use this credential`
			}
		);
	}
	if (!scope.length) {
		throw new ServiceError('validation_failed', 'No node signs in with this credential', {
			credential_id: 'no node uses it'
		});
	}
	return { credentialId, scope };
}

/** What each host accepts today, looked at with its own credential; nothing is changed. */
export async function surveyHosts(scope: Node[]): Promise<HostAccess[]> {
	const known = await db().select({ name: credentials.name, publicKey: credentials.publicKey }).from(credentials);
	const out: HostAccess[] = new Array(scope.length);
	let next = 0;
	const worker = async () => {
		while (next < scope.length) {
			const i = next++;
			const node = scope[i]!;
			const base = { node: node.name, node_id: node.id, host: node.host };
			try {
				const conn = await connectWith(node, node.credentialId);
				try {
					const file = await readAuthorizedKeys(connectionRunner(conn));
					out[i] = { ...base, reachable: true, error: null, survey: surveyOf(file, known) };
				} finally {
					conn.close();
				}
			} catch (err) {
				out[i] = { ...base, reachable: false, error: (err as Error).message, survey: null };
			}
		}
	};
	await Promise.all(Array.from({ length: Math.min(DRY_RUN_CONCURRENCY, scope.length) }, worker));
	return out;
}

async function refuseOverlap(tx: Database, scope: Node[]): Promise<void> {
	const [running] = await tx
		.select({ number: keyRotations.number })
		.from(keyRotations)
		.where(eq(keyRotations.state, 'running'))
		.limit(1);
	if (running)
		throw conflict(`Key rotation #${running.number} is still running`, {
			nodes: `rotation #${running.number} is running`
		});
	const [waiting] = await tx
		.select({ number: keyRotations.number, node: keyRotationNodes.nodeName, state: keyRotations.state })
		.from(keyRotationNodes)
		.innerJoin(keyRotations, eq(keyRotations.id, keyRotationNodes.rotationId))
		.where(
			and(
				or(
					and(eq(keyRotations.state, 'open'), eq(keyRotationNodes.state, 'deferred')),
					// An aborted rotation's own lines are still on the node: they go first.
					and(eq(keyRotations.state, 'aborted'), eq(keyRotationNodes.state, 'cleanup'))
				),
				inArray(
					keyRotationNodes.nodeId,
					scope.map((n) => n.id)
				)
			)
		)
		.limit(1);
	if (waiting) {
		throw conflict(
			waiting.state === 'aborted'
				? `Key rotation #${waiting.number} was aborted and still has to clean up ${waiting.node}`
				: `Key rotation #${waiting.number} still waits for ${waiting.node} to come back`,
			{
				nodes: `${waiting.node} is still in rotation #${waiting.number}`
			}
		);
	}
}

/** The safety net the last finished rotation kept on its nodes, if the console still holds it. */
async function keptSafetyNet(tx: Database): Promise<{ id: string; fingerprint: string } | null> {
	const [last] = await tx
		.select({ id: credentials.id, fingerprint: credentials.fingerprint, remove: keyRotations.removeSafetyNet })
		.from(keyRotations)
		.innerJoin(credentials, eq(credentials.id, keyRotations.safetyNetCredentialId))
		.where(inArray(keyRotations.state, ['completed', 'open']))
		.orderBy(desc(keyRotations.number))
		.limit(1);
	return last && !last.remove ? { id: last.id, fingerprint: last.fingerprint } : null;
}

export type RotationStart = { dryRun: HostAccess[] } | { rotationId: string; runId: string | null };

export async function startKeyRotation(actor: Actor, input: RotateKeysInput): Promise<RotationStart> {
	const { credentialId, scope } = await resolveScope(input);
	if (input.dry_run) return { dryRun: await surveyHosts(scope) };
	const [old] = await db().select().from(credentials).where(eq(credentials.id, credentialId));
	const { rotation, fresh, net } = await db().transaction(async (tx) => {
		// One start at a time: the check for another rotation and the insert of this one are one step, so two
		// admins starting at the same instant cannot both pass the check; the second waits here, then gets the 409.
		await tx.execute(sql`select pg_advisory_xact_lock(hashtext('flotilla:key-rotation:start'))`);
		await refuseOverlap(tx, scope);
		// K0: the new pair is made here and sealed at once; its private half never leaves the console. A safety net
		// kept by the last rotation serves this one too (that is what keeping it is for); otherwise one is made.
		const stamp = new Date().toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-');
		const fresh = await createCredential(
			actor,
			{
				name: `${old!.name.replace(/ \d{8}-\d{6}$/, '')} ${stamp}`,
				privateKey: generateEd25519(`flotilla ${stamp}`).privateKey
			},
			tx
		);
		const net =
			(await keptSafetyNet(tx)) ??
			(await createCredential(
				actor,
				{
					name: `safety net ${stamp}`,
					privateKey: generateEd25519(`flotilla safety net ${stamp}`).privateKey
				},
				tx
			));
		const [row] = await tx
			.insert(keyRotations)
			.values({
				oldCredentialId: credentialId,
				newCredentialId: fresh.id,
				safetyNetCredentialId: net.id,
				removeSafetyNet: input.remove_safety_net,
				createdBy: actor.name
			})
			.returning();
		await tx
			.insert(keyRotationNodes)
			.values(scope.map((n) => ({ rotationId: row!.id, nodeId: n.id, nodeName: n.name })));
		return { rotation: row!, fresh, net };
	});
	await recordAudit(actor, {
		action: 'ssh_keys.rotate',
		targetType: 'key_rotation',
		targetId: rotation.id,
		details: {
			number: rotation.number,
			phase: 'K0',
			old_credential: old!.name,
			new_fingerprint: fresh.fingerprint,
			safety_net_fingerprint: net.fingerprint,
			nodes: scope.length,
			remove_safety_net: input.remove_safety_net
		}
	});
	await driveKeyRotation(rotation.id);
	const [after] = await db()
		.select({ runId: keyRotations.phaseRunId })
		.from(keyRotations)
		.where(eq(keyRotations.id, rotation.id));
	return { rotationId: rotation.id, runId: after?.runId ?? null };
}

export type RotationView = KeyRotation & {
	nodes: KeyRotationNode[];
	oldCredential: string | null;
	newCredential: string | null;
	safetyNetCredential: string | null;
};

async function withDetails(rows: KeyRotation[]): Promise<RotationView[]> {
	if (!rows.length) return [];
	const nodeRows = await db()
		.select()
		.from(keyRotationNodes)
		.where(
			inArray(
				keyRotationNodes.rotationId,
				rows.map((r) => r.id)
			)
		)
		.orderBy(asc(keyRotationNodes.nodeName));
	const names = new Map(
		(await db().select({ id: credentials.id, name: credentials.name }).from(credentials)).map((c) => [c.id, c.name])
	);
	const nameOf = (id: string | null) => (id ? (names.get(id) ?? null) : null);
	return rows.map((r) => ({
		...r,
		nodes: nodeRows.filter((n) => n.rotationId === r.id),
		oldCredential: nameOf(r.oldCredentialId),
		newCredential: nameOf(r.newCredentialId),
		safetyNetCredential: nameOf(r.safetyNetCredentialId)
	}));
}

export async function listKeyRotations(limit = 10): Promise<RotationView[]> {
	return withDetails(await db().select().from(keyRotations).orderBy(desc(keyRotations.number)).limit(limit));
}

export async function getKeyRotation(id: string): Promise<RotationView> {
	const [row] = await db().select().from(keyRotations).where(eq(keyRotations.id, id));
	if (!row) throw notFound('Key rotation');
	return (await withDetails([row]))[0]!;
}

/**
 * What each credential is to the rotations: `retired` (replaced on its nodes by K5, kept while a node may need it),
 * `safety net`, or `rotating` (the old key of a rotation under way).
 */
export async function credentialMarks(): Promise<Map<string, 'retired' | 'safety net' | 'rotating'>> {
	const rows = await db()
		.select({
			state: keyRotations.state,
			old: keyRotations.oldCredentialId,
			net: keyRotations.safetyNetCredentialId,
			phase: keyRotations.phase
		})
		.from(keyRotations)
		.orderBy(asc(keyRotations.number));
	const marks = new Map<string, 'retired' | 'safety net' | 'rotating'>();
	for (const r of rows) {
		if (r.net) marks.set(r.net, 'safety net');
		if (!r.old) continue;
		const pastK5 = r.state === 'open' || r.state === 'completed' || r.phase === 'K6';
		if (pastK5) marks.set(r.old, 'retired');
		else if (r.state === 'running') marks.set(r.old, 'rotating');
	}
	return marks;
}
