import { randomBytes } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRoleSchema } from '../../src/lib/schemas/code-sync';
import { createRolloutSchema } from '../../src/lib/schemas/releases';
import { systemActor } from '../../src/lib/server/audit';
import { createRole } from '../../src/lib/server/codesync/roles';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { credentials, nodes, rolloutNodes, rollouts, runs } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { ServiceError } from '../../src/lib/server/errors';
import { validate } from '../../src/lib/server/http/api';
import { useReleaseKeys } from '../../src/lib/server/releases/keys';
import { createRelease } from '../../src/lib/server/releases/releases';
import { hmacSignature } from '../../src/lib/server/releases/signing';
import { cancelRollout, driveRollout, driveRollouts } from '../../src/lib/server/rollouts/driver';
import { rolloutFromForm } from '../../src/lib/server/rollouts/forms';
import { createRollout, getRollout } from '../../src/lib/server/rollouts/rollouts';
import { backends } from '../support/databases';

/** What POST /api/rollouts refuses, and why, before anything runs (no host is contacted). */

const SECRET = 'rollouts-api-signing-secret-01';
registerDomains();

async function refusal(input: Record<string, unknown>): Promise<ServiceError> {
	const err = await (async () => createRollout(systemActor, validate(createRolloutSchema, input)))().catch(
		(e: unknown) => e
	);
	expect(err).toBeInstanceOf(ServiceError);
	return err as ServiceError;
}

describe.each(backends)('rollout input on $name', ({ open }) => {
	let handle: DatabaseHandle;
	let releaseId = '';
	beforeAll(async () => {
		handle = await open();
		useDatabase(handle);
		useMasterKey(randomBytes(32));
		useReleaseKeys({ ed25519: [], hmacSecret: SECRET });
		const [cred] = await db()
			.insert(credentials)
			.values({
				id: crypto.randomUUID(),
				name: 'k',
				keyType: 'ssh-ed25519',
				publicKey: 'x',
				fingerprint: 'SHA256:x',
				sealedPrivateKey: 'x'
			})
			.returning();
		await createRole(systemActor, createRoleSchema.parse({ name: 'web', path: '/opt/web', units: ['web.service'] }));
		await db()
			.insert(nodes)
			.values(
				['a', 'b', 'c', 'beta-1'].map((name) => ({
					name,
					host: `10.0.0.${name.length}`,
					credentialId: cred!.id,
					roles: ['web'],
					labels: (name.startsWith('beta') ? { channel: 'beta' } : {}) as Record<string, string>,
					hostKeyFingerprint: 'SHA256:x',
					hostKeyStatus: 'pinned' as const
				}))
			);
		const m: Record<string, unknown> = {
			version: '1.0.0',
			sha: 'abcdef1',
			channel: 'stable',
			migrations_required: false,
			breaking_changes: null,
			released_at: '2026-01-01T00:00:00Z'
		};
		releaseId = (await createRelease(systemActor, { ...m, signature: hmacSignature(m, SECRET) })).id;
	});
	afterAll(async () => {
		useReleaseKeys(undefined);
		useMasterKey(undefined);
		useDatabase(undefined);
		await handle.close();
	});

	it('a start and the periodic turn deciding at once start the stage once: one run, the stage’s', async () => {
		const { rollout } = await createRollout(
			systemActor,
			validate(createRolloutSchema, { release_id: releaseId, strategy: 'immediate', target: { nodes: ['a', 'b'] } })
		);
		// As the rollouts page does after creating it, while the engine's periodic job takes its turn.
		await Promise.all([driveRollout(rollout!.id), driveRollouts(), driveRollout(rollout!.id)]);
		const r = await getRollout(rollout!.id);
		const started = (await db().select().from(runs)).filter((run) => run.scope.rollout_id === rollout!.id);
		expect(started.map((run) => run.id)).toEqual([r.stages[0]!.runId]);
	});

	it('two consoles deciding the same stage at once create one run for it, and cancel none', async () => {
		// A second console: its own copy of the driver (its own per-console queue of decisions), the same database.
		const path = '../../src/lib/server/rollouts/driver?console=2';
		const other = (await import(/* @vite-ignore */ path)) as typeof import('../../src/lib/server/rollouts/driver');
		expect(other.driveRollout).not.toBe(driveRollout);
		const [c] = await db().select().from(nodes).where(eq(nodes.name, 'c'));
		const runsOf = async (id: string) => (await db().select().from(runs)).filter((run) => run.scope.rollout_id === id);
		for (let i = 0; i < 16; i++) {
			const { rollout } = await createRollout(
				systemActor,
				validate(createRolloutSchema, { release_id: releaseId, strategy: 'immediate', target: { nodes: ['c'] } })
			);
			const id = rollout!.id;
			if (i % 2) {
				// As a console that crashed after marking the stage running, before its run was created, left it.
				await db().insert(rolloutNodes).values({ rolloutId: id, nodeId: c!.id, nodeName: 'c', stage: 0 });
				await db()
					.update(rollouts)
					.set({ currentStage: 0, stages: [{ ...rollout!.stages[0]!, state: 'running' }] })
					.where(eq(rollouts.id, id));
			}
			await Promise.all([driveRollout(id), other.driveRollout(id)]);
			const r = await getRollout(id);
			const started = await runsOf(id);
			expect(
				started.map((run) => [run.id, run.state]),
				`attempt ${i}`
			).toEqual([[r.stages[0]!.runId, 'queued']]);
			await cancelRollout(systemActor, id);
		}
	});

	it('stages must grow and end at 100; bake in minutes or seconds, not both', async () => {
		const base = { release_id: releaseId, strategy: 'staged' };
		expect(
			(await refusal({ ...base, stages: [{ percent: 50 }, { percent: 20 }, { percent: 100 }] })).fields[
				'stages.1.percent'
			]
		).toMatch(/more than 50/);
		expect((await refusal({ ...base, stages: [{ percent: 10 }, { percent: 60 }] })).fields['stages.1.percent']).toMatch(
			/must be 100/
		);
		expect(
			(await refusal({ ...base, stages: [{ percent: 100, bake_minutes: 1, bake_seconds: 3 }] })).fields[
				'stages.0.bake_seconds'
			]
		).toMatch(/not both/);
		expect((await refusal({ ...base, stages: [{ percent: 0 }] })).fields['stages.0.percent']).toMatch(/at least 1/);
		expect((await refusal({ ...base, strategy: 'big-bang' })).fields.strategy).toMatch(/immediate, staged or canary/);
		expect(
			(await refusal({ release_id: releaseId, strategy: 'immediate', stages: [{ percent: 50 }, { percent: 100 }] }))
				.fields.stages
		).toMatch(/exactly one stage/);
	});

	it('an unknown release, role or node is a 400 naming it', async () => {
		const r = await refusal({ release_id: '00000000-0000-4000-8000-000000000000', strategy: 'immediate' });
		expect(r.fields.release_id).toMatch(/no release/);
		expect(
			(await refusal({ release_id: releaseId, strategy: 'immediate', target: { roles: ['nope'] } })).fields[
				'target.roles'
			]
		).toMatch(/no role nope/);
		expect(
			(await refusal({ release_id: releaseId, strategy: 'immediate', target: { nodes: ['zz'] } })).fields[
				'target.nodes'
			]
		).toMatch(/no node zz/);
		expect((await refusal({ release_id: releaseId, strategy: 'immediate', extra: 1 })).fields._).toMatch(/extra/);
	});

	it('the channel: a stable release targets stable nodes; the beta channel only the nodes labelled so', async () => {
		const { preview } = await createRollout(
			systemActor,
			validate(createRolloutSchema, { release_id: releaseId, strategy: 'immediate', dry_run: true })
		);
		expect(preview.stages[0]!.nodes.map((n) => n.name).sort()).toEqual(['a', 'b', 'c']);
		const beta = await createRollout(
			systemActor,
			validate(createRolloutSchema, {
				release_id: releaseId,
				strategy: 'immediate',
				target: { channel: 'beta' },
				dry_run: true
			})
		);
		expect(beta.preview.stages[0]!.nodes.map((n) => n.name)).toEqual(['beta-1']);
	});

	it('the create form reads the preset with its bake time, and custom stages', () => {
		const form = new FormData();
		form.set('release_id', releaseId);
		form.set('strategy', 'canary');
		form.set('bake_minutes', '0.5');
		form.set('roles', 'web, api');
		expect(rolloutFromForm(form)).toMatchObject({
			strategy: 'canary',
			stages: [
				{ percent: 5, bake_minutes: 0.5 },
				{ percent: 25, bake_minutes: 0.5 },
				{ percent: 100, bake_minutes: 0.5 }
			],
			target: { roles: ['web', 'api'] }
		});
		form.set('percents', '20, 100');
		expect(rolloutFromForm(form).stages?.map((s) => s.percent)).toEqual([20, 100]);
	});

	it('the create form reads the start as a wall-clock time in the browser’s zone, and the minimum finished nodes', () => {
		const form = new FormData();
		form.set('release_id', releaseId);
		form.set('strategy', 'staged');
		form.set('min_finished_nodes', '4');
		form.set('start_at', '2026-12-01T21:30');
		form.set('start_at_zone', 'Europe/Berlin');
		expect(rolloutFromForm(form)).toMatchObject({ min_finished_nodes: 4, start_at: '2026-12-01T20:30:00.000Z' });
		// No zone (a page that ran no script): the form said UTC.
		form.delete('start_at_zone');
		expect(rolloutFromForm(form).start_at).toBe('2026-12-01T21:30:00.000Z');
		const refused = (set: Record<string, string>) => {
			const bad = new FormData();
			bad.set('release_id', releaseId);
			bad.set('strategy', 'staged');
			for (const [k, v] of Object.entries(set)) bad.set(k, v);
			const err = (() => {
				try {
					rolloutFromForm(bad);
				} catch (e) {
					return e;
				}
			})();
			expect(err).toBeInstanceOf(ServiceError);
			return (err as ServiceError).fields;
		};
		// The API's schema judges what the form sends, and its errors name the form's fields.
		expect(refused({ start_at: 'next tuesday' })).toEqual({ start_at: 'must be an ISO 8601 timestamp' });
		expect(refused({ start_at: '2026-12-01T21:30', start_at_zone: 'Mars/Olympus' })).toEqual({
			start_at: 'is in an unknown time zone, Mars/Olympus'
		});
		expect(refused({ min_finished_nodes: '0' })).toEqual({ min_finished_nodes: 'must be at least 1' });
		expect(refused({ min_finished_nodes: 'three' }).min_finished_nodes).toMatch(/must be a number/);
	});
});
