import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { readFile, readlink, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { and, asc, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRoleSchema, updateRoleSchema } from '../../src/lib/schemas/code-sync';
import { systemActor } from '../../src/lib/server/audit';
import { notifyCommit } from '../../src/lib/server/codesync/notify';
import { triggerUpdate } from '../../src/lib/server/codesync/plan';
import { createRole, getRole, updateRole } from '../../src/lib/server/codesync/roles';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase } from '../../src/lib/server/db';
import { events, nodes } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { startEngine, stopEngine } from '../../src/lib/server/engine';
import { PATCH as patchRole } from '../../src/routes/api/roles/[name]/+server';
import { freshPostgres } from '../support/databases';
import { waitForRun } from '../support/engine';
import { registerTestbedNodes } from '../support/testbed-nodes';
import { git } from '../testbed/repos';
import { startTestbed, type Testbed } from '../testbed/testbed';

/**
 * OpenPGP allowed signers (docs/code-sync.md, "Signed commits and tags") on real sshd hosts (127.0.1.81–82):
 * keys made and commits signed by the real gpg and git, the check run by the hosts' own gpg and git, and what
 * the tests check read from the hosts' filesystems.
 */

const ROLE = 'pgp';
const run = promisify(execFile);
let bed: Testbed;
let pg: Awaited<ReturnType<typeof freshPostgres>>;
let work = '';
/** Each signer's GNUPGHOME, its key's fingerprint and its armored public key. */
const signers = {
	allowed: { home: '', fpr: '', armored: '' },
	other: { home: '', fpr: '', armored: '' }
};
let sshKey = '';
let sshLine = '';

type Signer = { gpg: keyof typeof signers } | { ssh: string } | null;

/** A commit on the origin's main, signed by `signer` (an OpenPGP key, an SSH key) or unsigned; returns its sha. */
async function commit(note: string, signer: Signer): Promise<string> {
	await writeFile(join(work, 'note.txt'), `${note}\n`);
	await git(['-C', work, 'add', '--all']);
	const args =
		signer && 'gpg' in signer
			? ['-c', 'gpg.format=openpgp', '-c', `user.signingkey=${signers[signer.gpg].fpr}`]
			: signer
				? ['-c', 'gpg.format=ssh', '-c', `user.signingkey=${signer.ssh}`]
				: [];
	const env = signer && 'gpg' in signer ? { ...process.env, GNUPGHOME: signers[signer.gpg].home } : process.env;
	await run('git', ['-C', work, ...args, 'commit', '--quiet', ...(signer ? ['-S'] : []), '-m', note], { env });
	await git(['-C', work, 'push', '--quiet', 'origin', 'HEAD:main']);
	return git(['-C', work, 'rev-parse', 'HEAD']);
}

async function deploy(sha: string, role = ROLE) {
	await notifyCommit(systemActor, { commit: sha, changed_roles: [role] });
	const { runId } = await triggerUpdate(systemActor, { scope: { roles: [role] }, dry_run: false, concurrency: 5 });
	return waitForRun(runId!, ['succeeded', 'failed', 'paused'], 120_000);
}

async function logOf(taskId: string): Promise<string[]> {
	const rows = await db()
		.select({ data: events.data })
		.from(events)
		.where(and(eq(events.taskId, taskId), eq(events.type, 'task.output')))
		.orderBy(asc(events.id));
	return rows.flatMap((r) => (r.data.lines as { t: string }[]).map((l) => `${String(r.data.step)}: ${l.t}`));
}

const steps = (t: { steps: { phase: string; name: string; state: string }[] }) =>
	t.steps.map((s) => `${s.phase}:${s.name}:${s.state}`);

const change = (fields: Record<string, unknown>) => updateRole(systemActor, ROLE, updateRoleSchema.parse(fields));

/** PATCH /api/roles/{name} as the API receives it. */
async function patch(name: string, body: unknown): Promise<Response> {
	const url = new URL(`http://console/api/roles/${name}`);
	const request = new Request(url, {
		method: 'PATCH',
		headers: { 'content-type': 'application/json' },
		body: JSON.stringify(body)
	});
	return patchRole({ request, url, params: { name }, locals: {}, getClientAddress: () => '127.0.0.1' } as never);
}

beforeAll(async () => {
	bed = await startTestbed({ hosts: 2, firstHost: 81, roles: [ROLE] });
	work = bed.origins[ROLE]!.replace(/\.git$/, '.work');
	for (const name of ['allowed', 'other'] as const) {
		const home = join(bed.dir, `gnupg-${name}`);
		await run('mkdir', ['-m', '700', home]);
		const gpg = (args: string[]) => run('gpg', ['--homedir', home, '--batch', ...args]);
		await gpg([
			'--pinentry-mode',
			'loopback',
			'--passphrase',
			'',
			'--quick-gen-key',
			`${name} <${name}@flotilla.test>`
		]);
		const listed = (await gpg(['--with-colons', '--list-keys'])).stdout;
		const fpr = /^fpr:+([0-9A-F]{40}):/m.exec(listed)![1]!;
		signers[name] = { home, fpr, armored: (await gpg(['--armor', '--export', fpr])).stdout.trim() };
	}
	sshKey = join(bed.dir, 'signing-ssh');
	await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'ssh', '-f', sshKey]);
	const [type, blob] = (await readFile(`${sshKey}.pub`, 'utf8')).split(' ');
	sshLine = `deploy@flotilla.test ${type} ${blob}`;
	pg = await freshPostgres('flotilla_openpgp');
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	registerDomains();
	await registerTestbedNodes(bed, () => ({ roles: [ROLE] }));
	await createRole(
		systemActor,
		createRoleSchema.parse({
			name: ROLE,
			path: `/opt/${ROLE}`,
			units: [`${ROLE}.service`],
			install_command: ['sh', 'install.sh'],
			health: { type: 'command', command: ['true'] },
			health_timeout_seconds: 2
		})
	);
	await startEngine({ concurrency: 10, leaseMs: 10_000, sweepMs: 1_000 });
}, 180_000);

afterAll(async () => {
	await stopEngine();
	useMasterKey(undefined);
	useDatabase(undefined);
	await pg?.close();
	for (const { home } of Object.values(signers)) {
		if (home) await run('gpgconf', ['--homedir', home, '--kill', 'all']).catch(() => {});
	}
	await bed?.stop();
});

describe('OpenPGP allowed signers', () => {
	let good = '';

	it('a key that is not an armored OpenPGP public key is refused when the role is saved, naming the field', async () => {
		const key = signers.allowed.armored;
		const lines = key.split('\n');
		const body = lines.findIndex((l) => l === '') + 1;
		// One character of the key's body changed: its checksum no longer matches.
		const changed = lines.map((l, i) => (i === body ? `${l[0] === 'A' ? 'B' : 'A'}${l.slice(1)}` : l)).join('\n');
		const secret = (
			await run('gpg', [
				'--homedir',
				signers.other.home,
				'--batch',
				'--pinentry-mode',
				'loopback',
				'--passphrase',
				'',
				'--armor',
				'--export-secret-keys',
				signers.other.fpr
			])
		).stdout;
		for (const [bad, message] of [
			['not a key', /must be one armored OpenPGP public key/],
			[changed, /checksum does not match/],
			[secret, /is a private key/],
			[sshLine, /must be one armored OpenPGP public key/]
		] as const) {
			const res = await patch(ROLE, { signatures: { openpgp_keys: [key, bad] } });
			expect(res.status).toBe(400);
			const answer = await res.json();
			expect(answer.error.fields['signatures.openpgp_keys.1']).toMatch(message);
			expect(Object.keys(answer.error.fields)).toEqual(['signatures.openpgp_keys.1']);
			// Nothing half-saved.
			expect((await getRole(ROLE)).signatures).toBeNull();
		}
		const empty = await patch(ROLE, { signatures: { openpgp_keys: [] } });
		expect(empty.status).toBe(400);
		expect((await empty.json()).error.fields).toHaveProperty(['signatures.allowed_signers']);
	});

	it('a commit signed by an allowed OpenPGP key deploys, checked by the node with the role’s keys only', async () => {
		const res = await patch(ROLE, { signatures: { openpgp_keys: [signers.allowed.armored] } });
		expect(res.status).toBe(200);
		good = await commit('signed with OpenPGP', { gpg: 'allowed' });
		const r = await deploy(good);
		expect(r.state).toBe('succeeded');
		for (const h of bed.hosts) expect(await bed.checkedOutCommit(h, ROLE)).toBe(good);
		expect(await logOf(r.tasks[0]!.id)).toContain(
			`preflight: ${ROLE}: commit ${good.slice(0, 12)} is signed by an allowed signer`
		);
		// The keys git's gpg read are the console's, written on the node inside .git (the checkout stays clean).
		const written = await readFile(join(bed.hosts[0]!.root, `opt/${ROLE}/.git/flotilla-openpgp-keys.asc`), 'utf8');
		expect(written).toBe(`${signers.allowed.armored}\n`);
		expect(await git(['-C', join(bed.hosts[0]!.root, `opt/${ROLE}`), 'status', '--porcelain'])).toBe('');
	}, 180_000);

	it('an unsigned commit and one signed by another OpenPGP key fail before the switch with the reason; the nodes stay as they were', async () => {
		// The other key is trusted by root's own keyring on the nodes: the check must not read that keyring.
		for (const h of bed.hosts) {
			const home = join(h.root, 'root/.gnupg');
			await run('mkdir', ['-p', '-m', '700', home]);
			await writeFile(join(bed.dir, 'other.asc'), signers.other.armored);
			await run('gpg', ['--homedir', home, '--batch', '--quiet', '--import', join(bed.dir, 'other.asc')]);
			await run('gpgconf', ['--homedir', home, '--kill', 'all']);
		}
		for (const [signer, reason] of [
			[null, /\(no signature found\)/],
			[{ gpg: 'other' } as const, /No public key/]
		] as const) {
			const bad = await commit(`bad: ${JSON.stringify(signer)}`, signer);
			const r = await deploy(bad);
			expect(r.state).toBe('failed');
			for (const t of r.tasks) {
				expect(t.state).toBe('failed');
				expect(t.error).toMatch(
					new RegExp(`^preflight: ${ROLE}: commit ${bad.slice(0, 12)} is not signed by an allowed signer \\(`)
				);
				expect(t.error).toMatch(reason);
				expect(t.error).toMatch(/; nothing was changed$/);
				expect(steps(t)).toEqual(['do:prepare:succeeded', 'do:fetch:succeeded', 'do:preflight:failed']);
			}
			for (const h of bed.hosts) {
				expect(await bed.checkedOutCommit(h, ROLE)).toBe(good);
				expect(await readFile(join(h.root, `opt/${ROLE}/build/REVISION`), 'utf8')).toBe(`${good}\n`);
			}
		}
	}, 240_000);

	it('with SSH signers beside the OpenPGP keys, a commit signed by either deploys and one by neither does not', async () => {
		await change({ signatures: { allowed_signers: [sshLine], openpgp_keys: [signers.allowed.armored] } });
		good = await commit('signed with SSH', { ssh: sshKey });
		expect((await deploy(good)).state).toBe('succeeded');
		good = await commit('signed with OpenPGP again', { gpg: 'allowed' });
		expect((await deploy(good)).state).toBe('succeeded');
		for (const h of bed.hosts) expect(await bed.checkedOutCommit(h, ROLE)).toBe(good);
		const bad = await commit('signed by the other OpenPGP key', { gpg: 'other' });
		const r = await deploy(bad);
		expect(r.tasks.map((t) => t.state)).toEqual(['failed', 'failed']);
		for (const t of r.tasks) expect(t.error).toMatch(/is not signed by an allowed signer \(.*No public key/);
		for (const h of bed.hosts) expect(await bed.checkedOutCommit(h, ROLE)).toBe(good);
		await change({ signatures: null });
	}, 300_000);

	it("a push role's OpenPGP signature is checked in the console's checkout before anything is uploaded", async () => {
		await createRole(
			systemActor,
			createRoleSchema.parse({
				name: 'pgp-shipped',
				method: 'push',
				path: '/opt/pgp-shipped',
				source_repo: work,
				units: ['pgp-shipped.service'],
				signatures: { openpgp_keys: [signers.allowed.armored] }
			})
		);
		await db()
			.update(nodes)
			.set({ roles: [ROLE, 'pgp-shipped'] });
		const bad = await commit('push, other key', { gpg: 'other' });
		let r = await deploy(bad, 'pgp-shipped');
		expect(r.state).toBe('failed');
		for (const t of r.tasks) {
			expect(t.error).toMatch(
				new RegExp(
					`^fetch: pgp-shipped: commit ${bad.slice(0, 12)} is not signed by an allowed signer \\(.*No public key`
				)
			);
		}
		for (const h of bed.hosts) {
			expect(await readdir(join(h.root, 'opt/pgp-shipped/releases')).catch(() => [])).toEqual([]);
		}
		const signed = await commit('push, allowed key', { gpg: 'allowed' });
		r = await deploy(signed, 'pgp-shipped');
		expect(r.state).toBe('succeeded');
		for (const h of bed.hosts) {
			expect(await readlink(join(h.root, 'opt/pgp-shipped/current'))).toBe(`releases/${signed}`);
		}
	}, 240_000);
});
