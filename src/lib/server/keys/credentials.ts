import { randomUUID } from 'node:crypto';
import { and, asc, eq, inArray, or } from 'drizzle-orm';
// ssh2 is CommonJS: Node's ESM loader sees its default export only.
import ssh2 from 'ssh2';
import { recordAudit, type Actor } from '$lib/server/audit';
import { masterKey } from '$lib/server/crypto/master-key';
import { openSecret, sealSecret } from '$lib/server/crypto/secret-box';
import { db, type Database } from '$lib/server/db';
import { credentials, keyRotations, nodes, type Credential } from '$lib/server/db/schema';
import { conflict, notFound, ServiceError } from '$lib/server/errors';
import { fingerprintOf } from '$lib/server/ssh/host-keys';

/** What may leave the console about a credential: never the private key or its passphrase. */
export type PublicCredential = Pick<Credential, 'id' | 'name' | 'keyType' | 'publicKey' | 'fingerprint' | 'createdAt'>;

const publicColumns = {
	id: credentials.id,
	name: credentials.name,
	keyType: credentials.keyType,
	publicKey: credentials.publicKey,
	fingerprint: credentials.fingerprint,
	createdAt: credentials.createdAt
};

const context = (id: string, part: 'key' | 'passphrase') => `credential:${id}:${part}`;

/**
 * Stores an SSH private key (ed25519, RSA or ECDSA, OpenSSH or PEM format, optionally passphrase-protected).
 * The key is parsed first, so a wrong passphrase or a public key pasted by mistake is refused with the field
 * named; then it is sealed under the master key, bound to this credential's id.
 */
export async function createCredential(
	actor: Actor,
	input: {
		name: string;
		privateKey: string;
		passphrase?: string;
	},
	executor: Database = db()
): Promise<PublicCredential> {
	const parsed = ssh2.utils.parseKey(input.privateKey, input.passphrase);
	if (parsed instanceof Error) {
		const encrypted = /encrypted|passphrase/i.test(parsed.message);
		throw new ServiceError(
			'validation_failed',
			encrypted ? 'The passphrase does not open this key' : 'This is not an SSH private key we can read',
			encrypted
				? { passphrase: input.passphrase ? 'does not open the key' : 'is required for this key' }
				: { private_key: 'must be an OpenSSH or PEM private key (ed25519, RSA or ECDSA)' }
		);
	}
	if (!parsed.isPrivateKey()) {
		throw new ServiceError('validation_failed', 'That is a public key; paste the private key', {
			private_key: 'is a public key, not a private key'
		});
	}
	const blob = parsed.getPublicSSH();
	const id = randomUUID();
	const key = masterKey();
	const [row] = await executor
		.insert(credentials)
		.values({
			id,
			name: input.name,
			keyType: parsed.type,
			publicKey: `${parsed.type} ${blob.toString('base64')}`,
			fingerprint: fingerprintOf(blob),
			sealedPrivateKey: sealSecret(key, input.privateKey, context(id, 'key')),
			sealedPassphrase: input.passphrase ? sealSecret(key, input.passphrase, context(id, 'passphrase')) : null
		})
		.onConflictDoNothing({ target: credentials.name })
		.returning(publicColumns);
	if (!row) throw conflict(`A credential named ${input.name} exists`, { name: 'already taken' });
	await recordAudit(
		actor,
		{
			action: 'credential.create',
			targetType: 'credential',
			targetId: row.id,
			details: { name: row.name, fingerprint: row.fingerprint }
		},
		executor
	);
	return row;
}

export function listCredentials(): Promise<PublicCredential[]> {
	return db().select(publicColumns).from(credentials).orderBy(asc(credentials.name));
}

export async function getCredential(id: string): Promise<PublicCredential> {
	const [row] = await db().select(publicColumns).from(credentials).where(eq(credentials.id, id));
	if (!row) throw notFound('Credential');
	return row;
}

/** A credential's row, sealed key included: for the SSH layer's targets only. */
export async function credentialRow(id: string): Promise<Credential> {
	const [row] = await db().select().from(credentials).where(eq(credentials.id, id));
	if (!row) throw notFound('Credential');
	return row;
}

/** The private key in clear, for the SSH layer only; it never leaves the server process. */
export async function unsealCredential(id: string): Promise<{ privateKey: string; passphrase?: string }> {
	return unsealCredentialRow(await credentialRow(id));
}

/** The private key (and passphrase) of a credential row already read, e.g. joined to the nodes it serves. */
export function unsealCredentialRow(row: Credential): { privateKey: string; passphrase?: string } {
	const key = masterKey();
	return {
		privateKey: openSecret(key, row.sealedPrivateKey, context(row.id, 'key')),
		passphrase: row.sealedPassphrase ? openSecret(key, row.sealedPassphrase, context(row.id, 'passphrase')) : undefined
	};
}

export async function deleteCredential(actor: Actor, id: string): Promise<void> {
	const [used] = await db().select({ id: nodes.id }).from(nodes).where(eq(nodes.credentialId, id)).limit(1);
	if (used) throw conflict('Nodes still use this credential: give them another one first');
	// A rotation under way, or one still waiting for nodes that were away, may yet sign in with it.
	const [rotation] = await db()
		.select({ number: keyRotations.number })
		.from(keyRotations)
		.where(
			and(
				// An aborted rotation still cleaning up needs its keys to know which lines are its own.
				or(
					inArray(keyRotations.state, ['running', 'open']),
					and(eq(keyRotations.state, 'aborted'), eq(keyRotations.phase, 'cleanup'))
				),
				or(
					eq(keyRotations.oldCredentialId, id),
					eq(keyRotations.newCredentialId, id),
					eq(keyRotations.safetyNetCredentialId, id)
				)
			)
		)
		.limit(1);
	if (rotation) throw conflict(`Key rotation #${rotation.number} still needs this credential`);
	const gone = await db().delete(credentials).where(eq(credentials.id, id)).returning({ id: credentials.id });
	if (!gone.length) throw notFound('Credential');
	await recordAudit(actor, { action: 'credential.delete', targetType: 'credential', targetId: id });
}
