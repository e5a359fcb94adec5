import { and, eq } from 'drizzle-orm';
import { StepFailed, type StepContext } from '$lib/server/engine';
import { db } from '$lib/server/db';
import {
	credentials,
	keyRotationNodes,
	keyRotations,
	nodes,
	type Credential,
	type KeyRotation,
	type KeySurvey
} from '$lib/server/db/schema';
import { addKey, blobOf, keyFingerprint, keyLines, markerOf, removeKey } from './authorized-keys';
import { tryLogin } from './login';
import { editAuthorizedKeys, readAuthorizedKeys, type AuthorizedKeys } from './remote';

/*
 * What each phase does on one node (docs/ssh-key-rotation.md). Every phase can run again and change nothing
 * the second time: a key already there is not added twice, a key already gone is not looked for.
 */

export const nodePhases = ['survey', 'K1', 'K2', 'K3', 'K4', 'K5', 'K6'] as const;
export type NodePhase = (typeof nodePhases)[number];

export const phaseTitles: Record<NodePhase, string> = {
	survey: 'Dry run: what each host accepts',
	K1: 'K1 add the safety-net key',
	K2: 'K2 verify the safety-net key',
	K3: 'K3 add the new key',
	K4: 'K4 verify the new key',
	K5: 'K5 remove the old key',
	K6: 'K6 remove the safety-net key'
};

export interface RotationKeys {
	rotation: KeyRotation;
	old: Credential;
	fresh: Credential | null;
	safetyNet: Credential | null;
}

export async function rotationKeys(rotationId: string): Promise<RotationKeys> {
	const [rotation] = await db().select().from(keyRotations).where(eq(keyRotations.id, rotationId));
	if (!rotation) throw new StepFailed(`key rotation ${rotationId} is gone`);
	const byId = async (id: string | null) => {
		if (!id) return null;
		const [row] = await db().select().from(credentials).where(eq(credentials.id, id));
		return row ?? null;
	};
	const old = await byId(rotation.oldCredentialId);
	if (!old) throw new StepFailed('the old credential was deleted: this rotation cannot go on');
	return {
		rotation,
		old,
		fresh: await byId(rotation.newCredentialId),
		safetyNet: await byId(rotation.safetyNetCredentialId)
	};
}

type Ctx = StepContext<unknown>;

function need(c: Credential | null, what: string): Credential {
	if (!c) throw new StepFailed(`the rotation has no ${what} key`);
	return c;
}

/** What the host accepts today, as the dry run reports it. */
export function surveyOf(file: AuthorizedKeys, known: Pick<Credential, 'name' | 'publicKey'>[]): KeySurvey {
	const byBlob = new Map(known.map((c) => [blobOf(c.publicKey), c.name]));
	const survey: KeySurvey = {
		consoleKeys: [],
		otherKeys: [],
		passwordLogin: file.passwordLogin,
		passwordSource: file.passwordSource,
		mode: file.mode,
		owner: file.owner
	};
	for (const line of keyLines(file.content)) {
		const credential = byBlob.get(line.blob);
		const fingerprint = keyFingerprint(line.blob);
		if (credential) survey.consoleKeys.push({ fingerprint, credential, comment: line.comment });
		else survey.otherKeys.push({ fingerprint, type: line.type, comment: line.comment });
	}
	return survey;
}

async function addLine(ctx: Ctx, publicKey: string, marker: string, what: string): Promise<void> {
	const written = await editAuthorizedKeys(ctx, (content) => addKey(content, publicKey, marker));
	ctx.log(
		written
			? `${what} added to ~/.ssh/authorized_keys (${keyFingerprint(blobOf(publicKey))})`
			: `${what} is already in ~/.ssh/authorized_keys`
	);
}

async function verifyLogin(ctx: Ctx, credential: Credential, what: string): Promise<void> {
	const failure = await tryLogin(ctx.node, credential.id);
	if (failure) throw new StepFailed(`${what} does not log in: ${failure}`);
	ctx.log(`${what} logs in (${credential.fingerprint})`);
}

export async function runPhase(ctx: Ctx, rotationId: string, phase: NodePhase): Promise<void> {
	const keys = await rotationKeys(rotationId);
	switch (phase) {
		case 'survey': {
			const file = await readAuthorizedKeys(ctx);
			const known = await db().select({ name: credentials.name, publicKey: credentials.publicKey }).from(credentials);
			const survey = surveyOf(file, known);
			await db()
				.update(keyRotationNodes)
				.set({ survey })
				.where(and(eq(keyRotationNodes.rotationId, rotationId), eq(keyRotationNodes.nodeId, ctx.node.id)));
			ctx.log(
				`accepts ${survey.consoleKeys.length} key(s) of the console and ${survey.otherKeys.length} other key(s); password login: ${survey.passwordLogin}`
			);
			return;
		}
		case 'K1': {
			const net = need(keys.safetyNet, 'safety-net');
			return addLine(ctx, net.publicKey, markerOf('safety-net', net.id), 'the safety-net key');
		}
		case 'K2':
			return verifyLogin(ctx, need(keys.safetyNet, 'safety-net'), 'the safety-net key');
		case 'K3': {
			const fresh = need(keys.fresh, 'new');
			return addLine(ctx, fresh.publicKey, markerOf('primary', fresh.id), 'the new key');
		}
		case 'K4':
			return verifyLogin(ctx, need(keys.fresh, 'new'), 'the new key');
		case 'K5': {
			const fresh = need(keys.fresh, 'new');
			// Never remove the last key that works: the new one must log in right now, and the node is moved to it
			// before the old line goes, so a console that dies in between still reaches it.
			await verifyLogin(ctx, fresh, 'the new key');
			await db()
				.update(nodes)
				.set({ credentialId: fresh.id, updatedAt: new Date() })
				.where(and(eq(nodes.id, ctx.node.id), eq(nodes.credentialId, keys.old.id)));
			const oldBlob = blobOf(keys.old.publicKey);
			const written = await editAuthorizedKeys(ctx, (content) => removeKey(content, oldBlob));
			ctx.log(
				written
					? `the old key (${keys.old.fingerprint}) removed; the console now signs in with ${fresh.name}`
					: 'the old key is no longer in ~/.ssh/authorized_keys'
			);
			return;
		}
		case 'K6': {
			const net = need(keys.safetyNet, 'safety-net');
			const [current] = await db().select({ id: nodes.credentialId }).from(nodes).where(eq(nodes.id, ctx.node.id));
			const [own] = await db().select().from(credentials).where(eq(credentials.id, current!.id));
			if (own!.id === net.id) throw new StepFailed('the node signs in with the safety-net key itself: it stays');
			await verifyLogin(ctx, own!, `the node's key ${own!.name}`);
			const written = await editAuthorizedKeys(ctx, (content) =>
				removeKey(content, blobOf(net.publicKey), markerOf('safety-net', net.id))
			);
			ctx.log(written ? 'the safety-net key removed' : 'the safety-net key is no longer in ~/.ssh/authorized_keys');
			return;
		}
	}
}

export const cleanupTitle = 'Clean up after the abort: remove this rotation’s keys';

/**
 * After an abort, on a node where K1 or K3 ran: takes off the lines this rotation added — the new key, and the
 * safety net unless the node had it before (a net kept by the last rotation and reused) — each only where it
 * carries its marker. The old key is never touched, and the node's own key must log in first: the console never
 * removes the last key that works.
 */
export async function cleanUpAfterAbort(ctx: Ctx, rotationId: string): Promise<void> {
	const keys = await rotationKeys(rotationId);
	const [row] = await db()
		.select({ survey: keyRotationNodes.survey })
		.from(keyRotationNodes)
		.where(and(eq(keyRotationNodes.rotationId, rotationId), eq(keyRotationNodes.nodeId, ctx.node.id)));
	const [current] = await db().select({ id: nodes.credentialId }).from(nodes).where(eq(nodes.id, ctx.node.id));
	const [own] = await db().select().from(credentials).where(eq(credentials.id, current!.id));
	if (own!.id === keys.fresh?.id || own!.id === keys.safetyNet?.id) {
		throw new StepFailed(`the node signs in with ${own!.name}, a key of this rotation: it stays`);
	}
	await verifyLogin(ctx, own!, `the node's key ${own!.name}`);
	const net = keys.safetyNet;
	// What the node's dry run found decides; without that record the safety net is left where it is.
	const netWasThere = !row?.survey || row.survey.consoleKeys.some((k) => k.fingerprint === net?.fingerprint);
	const removed: string[] = [];
	const written = await editAuthorizedKeys(ctx, (content) => {
		removed.length = 0;
		let next = content;
		if (keys.fresh) {
			const without = removeKey(next, blobOf(keys.fresh.publicKey), markerOf('primary', keys.fresh.id));
			if (without !== next) removed.push(`the new key (${keys.fresh.fingerprint})`);
			next = without;
		}
		if (net && !netWasThere) {
			const without = removeKey(next, blobOf(net.publicKey), markerOf('safety-net', net.id));
			if (without !== next) removed.push(`the safety-net key (${net.fingerprint})`);
			next = without;
		}
		return next;
	});
	ctx.log(
		written
			? `${removed.join(' and ')} removed; the node keeps ${own!.name}`
			: `no line of this rotation is left in ~/.ssh/authorized_keys`
	);
	if (net && netWasThere) ctx.log(`the safety-net key was there before this rotation: it stays`);
}
