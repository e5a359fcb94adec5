import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { StepFailed, type Flow, type StepContext } from '$lib/server/engine';
import { hostSchema } from '$lib/schemas/remote';
import type { CertRole, Node } from '$lib/server/db/schema';
import { sh } from '$lib/server/ssh/shell';
import { issuingCa } from './authority';
import { crlUrl } from './crl';
import { handshake } from './handshake';
import { issueFromCsr } from './issue';
import { recordIssued } from './issued';
import { quietExec } from './remote';
import { certRolesOf } from './roles';
import { observeEndpoints, observeFiles, recordNode } from './scan';

/**
 * Certificate rotation on one node (docs/certificates.md, "Rotation"), for each of its certificate roles:
 * back up the certificate and key, make a new key and CSR on the node (the key never leaves it), have the
 * internal CA sign the CSR (or let the node sign itself, for self-signed roles), install, reload, and prove
 * by a handshake that the new fingerprint is served. A role with no endpoint has nothing to handshake with: the
 * node's own files are checked instead (the certificate is the one issued and belongs to the key), and the task
 * says it was verified on disk only. When anything fails, every installed role gets its backup back and is
 * reloaded, and the same proof shows the old certificate is back.
 */

export interface RoleRotation {
	role: string;
	/** What the role's file held before: what a restore must bring back. */
	oldFingerprint: string | null;
	backedUp?: boolean;
	newFingerprint?: string;
	/** Set before the new files are moved in: from then on an undo restores the backup. */
	installed?: boolean;
	/** How the new certificate was proved: what the task's memo keeps as its result. */
	verified?: string;
}

/** What a rotation of a role without endpoints can prove, in the task's log and result (docs/certificates.md). */
export const ON_DISK_ONLY = 'verified on disk only (no endpoint to handshake)';

type Ctx = StepContext<Record<string, never>>;

const bak = (path: string) => `${path}.flotilla-bak`;
const fresh = (path: string) => `${path}.flotilla-new`;
const csrPath = (role: CertRole) => `${role.certPath}.flotilla-csr`;

/** Subject alternative names: the node's name (when it is a DNS name), its address, and the role's extras. */
export function sansFor(node: Pick<Node, 'name' | 'host'>, role: Pick<CertRole, 'extraSans'>): string[] {
	const names = [node.name.toLowerCase(), node.host, ...role.extraSans];
	return [...new Set(names.filter((n) => hostSchema.safeParse(n).success))];
}

const rolesCache = new WeakMap<object, CertRole[]>();
async function rolesOf(ctx: Ctx): Promise<CertRole[]> {
	const cached = rolesCache.get(ctx.memo);
	if (cached) return cached;
	// Two roles of a node that keep their certificate in one file share one rotation (the first role's, in order):
	// rotating the file twice would have the second role sign a request the first already used.
	const roles = (await certRolesOf(ctx.node.roles)).filter(
		(r, i, all) => all.findIndex((o) => o.certPath === r.certPath) === i
	);
	rolesCache.set(ctx.memo, roles);
	return roles;
}

function progress(ctx: Ctx): RoleRotation[] {
	return ((ctx.memo.roles as RoleRotation[] | undefined) ??= []);
}

async function pending(ctx: Ctx): Promise<{ role: CertRole; p: RoleRotation }[]> {
	const roles = await rolesOf(ctx);
	return progress(ctx).flatMap((p) => {
		const role = roles.find((r) => r.role === p.role);
		return role ? [{ role, p }] : [];
	});
}

async function fileFingerprint(ctx: Ctx, path: string): Promise<string | null> {
	const r = await quietExec(ctx, sh`cat -- ${path}`, { deadlineMs: 10_000, okExitCodes: [0, 1] });
	if (r.exitCode !== 0) return null;
	try {
		return new X509Certificate(r.stdout).fingerprint256;
	} catch {
		return null;
	}
}

async function reload(ctx: Ctx, role: CertRole): Promise<void> {
	await ctx.exec(sh`${role.reloadCommand}`);
	ctx.log(`${role.role}: reloaded (${role.reloadCommand.join(' ')})`);
}

/**
 * Handshakes with every endpoint of the role until each serves `fingerprint` (a reload may take a moment to
 * reach every worker), within the step's own deadline. A role without endpoints is checked on the node instead.
 */
async function awaitServed(ctx: Ctx, role: CertRole, fingerprint: string, what: string): Promise<string> {
	if (!role.endpoints.length) return verifyOnDisk(ctx, role, fingerprint, what);
	for (const ep of role.endpoints) {
		let seen = '';
		for (let attempt = 0; attempt < 20; attempt++) {
			try {
				seen = (
					await handshake(ctx.node.host, ep.port, { servername: ep.servername, signal: ctx.signal, timeoutMs: 5_000 })
				).leaf.fingerprint256;
			} catch (err) {
				if (ctx.signal.aborted) throw err;
				seen = (err as Error).message;
			}
			if (seen === fingerprint) break;
			await new Promise((r) => setTimeout(r, 250));
		}
		if (seen !== fingerprint) {
			throw new StepFailed(
				`${role.role}: ${ctx.node.host}:${ep.port} does not serve the ${what} certificate ${fingerprint} (it serves ${seen})`
			);
		}
		ctx.log(`${role.role}: ${ctx.node.host}:${ep.port} serves the ${what} certificate ${fingerprint}`);
	}
	return 'by handshake';
}

/**
 * The proof left for a role that serves its certificate nowhere the console can reach: the file holds the
 * certificate expected, and its public key is the one of the key file beside it (both derived on the node, so
 * the private key stays there). Weaker than a handshake (nothing shows the service loaded it), and said so.
 */
async function verifyOnDisk(ctx: Ctx, role: CertRole, fingerprint: string, what: string): Promise<string> {
	const onDisk = await fileFingerprint(ctx, role.certPath);
	if (onDisk !== fingerprint) {
		throw new StepFailed(
			`${role.role}: ${role.certPath} does not hold the ${what} certificate ${fingerprint} (it holds ${onDisk ?? 'no readable certificate'})`
		);
	}
	// A key openssl cannot read fails like any other command (quietExec names openssl's reason).
	const fromCert = await quietExec(ctx, sh`openssl x509 -noout -pubkey -in ${role.certPath}`, { deadlineMs: 10_000 });
	const fromKey = await quietExec(ctx, sh`openssl pkey -pubout -in ${role.keyPath}`, { deadlineMs: 10_000 });
	if (fromCert.stdout.trim() !== fromKey.stdout.trim()) {
		throw new StepFailed(
			`${role.role}: the key in ${role.keyPath} does not belong to the ${what} certificate in ${role.certPath}`
		);
	}
	ctx.log(`${role.role}: ${role.certPath} holds the ${what} certificate ${fingerprint} and its key: ${ON_DISK_ONLY}`);
	return ON_DISK_ONLY;
}

/** Puts every installed role's backup back and reloads it, last first. */
async function restoreInstalled(ctx: Ctx): Promise<void> {
	for (const { role, p } of (await pending(ctx)).reverse()) {
		if (!p.installed) continue;
		await ctx.exec(
			sh`cp -p -- ${bak(role.keyPath)} ${role.keyPath} && cp -p -- ${bak(role.certPath)} ${role.certPath}`
		);
		ctx.log(`${role.role}: backup restored`);
		await reload(ctx, role);
		p.installed = false;
	}
}

/** Removes what `generate` and `sign` left on the node for a rotation that will not install it. */
async function removeUnused(ctx: Ctx): Promise<void> {
	for (const { role } of await pending(ctx)) {
		await ctx.exec(sh`rm -f -- ${fresh(role.keyPath)} ${fresh(role.certPath)} ${csrPath(role)}`);
	}
}

export const certRotateFlow: Flow<Record<string, never>> = {
	kind: 'cert-rotate',
	title: 'Certificate rotation',
	parseParams: () => ({}),
	steps: [
		{
			name: 'backup',
			deadlineMs: 60_000,
			async do(ctx) {
				const roles = await rolesOf(ctx);
				if (!roles.length) ctx.skip('none of its roles has certificate settings');
				// After a crash the memo already holds the backups made first: never back up a half-rotated state.
				const known = new Map(progress(ctx).map((p) => [p.role, p]));
				const list: RoleRotation[] = [];
				for (const role of roles) {
					const had = known.get(role.role);
					if (had?.backedUp) {
						list.push(had);
						continue;
					}
					const oldFingerprint = await fileFingerprint(ctx, role.certPath);
					await ctx.exec(
						sh`cp -p -- ${role.certPath} ${bak(role.certPath)} && cp -p -- ${role.keyPath} ${bak(role.keyPath)}`
					);
					ctx.log(`${role.role}: backed up ${role.certPath} (${oldFingerprint ?? 'unreadable'}) and its key`);
					list.push({ role: role.role, oldFingerprint, backedUp: true });
				}
				ctx.memo.roles = list;
			}
		},
		{
			name: 'generate',
			deadlineMs: 120_000,
			async do(ctx) {
				for (const { role } of await pending(ctx)) {
					const subject = `/CN=${ctx.node.name}`;
					const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
					// umask 077: the new key is readable by its owner only from the moment it exists.
					if (role.issuer === 'self-signed') {
						const sans = sansFor(ctx.node, role)
							.map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`))
							.join(',');
						await quietExec(
							ctx,
							sh`umask 077 && openssl req -x509 ${key} -keyout ${fresh(role.keyPath)} -out ${fresh(role.certPath)} -days ${role.validityDays} -subj ${subject} -addext ${`subjectAltName=${sans}`} -addext basicConstraints=critical,CA:FALSE`,
							{ deadlineMs: 60_000 }
						);
						ctx.log(`${role.role}: new key and self-signed certificate made on the node`);
					} else {
						await quietExec(
							ctx,
							sh`umask 077 && openssl req -new ${key} -keyout ${fresh(role.keyPath)} -out ${csrPath(role)} -subj ${subject}`,
							{ deadlineMs: 60_000 }
						);
						ctx.log(`${role.role}: new key and CSR made on the node; the key stays there`);
					}
				}
			},
			undo: removeUnused
		},
		{
			name: 'sign',
			deadlineMs: 60_000,
			async do(ctx) {
				for (const { role, p } of await pending(ctx)) {
					if (role.issuer === 'self-signed') {
						p.newFingerprint = (await fileFingerprint(ctx, fresh(role.certPath))) ?? undefined;
						if (!p.newFingerprint) throw new StepFailed(`${role.role}: the node made no readable certificate`);
						continue;
					}
					const ca = await issuingCa();
					if (!ca) throw new StepFailed('there is no internal CA to sign with: create or import one first');
					const { stdout: csr } = await quietExec(ctx, sh`cat -- ${csrPath(role)}`, { deadlineMs: 10_000 });
					const pem = issueFromCsr(ca, {
						csrPem: csr,
						commonName: ctx.node.name,
						sans: sansFor(ctx.node, role),
						days: role.validityDays,
						crlUrl: crlUrl(ca.id)
					});
					await quietExec(
						ctx,
						sh`umask 022 && printf '%s' ${pem} > ${fresh(role.certPath)} && rm -f -- ${csrPath(role)}`,
						{
							deadlineMs: 10_000
						}
					);
					const issued = await recordIssued({
						caId: ca.id,
						nodeId: ctx.node.id,
						nodeName: ctx.node.name,
						role: role.role,
						pem,
						runId: ctx.task.runId
					});
					p.newFingerprint = issued.fingerprint;
					ctx.log(`${role.role}: ${ca.name} signed serial ${issued.serial}, sha256 ${issued.fingerprint}`);
				}
			}
		},
		{
			name: 'install',
			deadlineMs: 60_000,
			async do(ctx) {
				try {
					for (const { role, p } of await pending(ctx)) {
						p.installed = true;
						await ctx.exec(
							sh`mv -f -- ${fresh(role.keyPath)} ${role.keyPath} && mv -f -- ${fresh(role.certPath)} ${role.certPath}`
						);
						ctx.log(`${role.role}: new certificate and key installed`);
					}
				} catch (err) {
					// The engine undoes completed steps only: what this step installed goes back here.
					await restoreInstalled(ctx);
					throw err;
				}
			},
			undo: restoreInstalled
		},
		{
			name: 'reload',
			deadlineMs: 180_000,
			async do(ctx) {
				for (const { role } of await pending(ctx)) await reload(ctx, role);
			}
		},
		{
			name: 'verify',
			deadlineMs: 120_000,
			async do(ctx) {
				for (const { role, p } of await pending(ctx)) {
					p.verified = await awaitServed(ctx, role, p.newFingerprint!, 'new');
				}
			}
		},
		{
			name: 'record',
			deadlineMs: 60_000,
			async do(ctx) {
				const roles = await rolesOf(ctx);
				await recordNode(ctx, [...(await observeFiles(ctx, roles)), ...(await observeEndpoints(ctx, roles))]);
			}
		}
	],

	/**
	 * After a crash: before anything was installed the rotation simply starts again (the backups in the memo are
	 * kept); once something was, the node is put back as it was, since no one saw the new certificate verified.
	 */
	async inspect(ctx) {
		return progress(ctx).some((p) => p.installed) ? 'rollback' : 'restart';
	},

	/** After a rollback, a handshake proves each endpoint serves the old certificate again (or, without one, the files). */
	async verify(ctx) {
		for (const { role, p } of await pending(ctx)) {
			if (p.oldFingerprint) await awaitServed(ctx, role, p.oldFingerprint, 'old');
		}
		const roles = await rolesOf(ctx);
		await recordNode(ctx, [...(await observeFiles(ctx, roles)), ...(await observeEndpoints(ctx, roles))]);
	}
};
