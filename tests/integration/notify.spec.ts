import { randomBytes } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { auditLog, notifyDeliveries, nodes } from '../../src/lib/server/db/schema';
import { registerFlow } from '../../src/lib/server/engine/flows';
import { createRun, startEngine, stopEngine } from '../../src/lib/server/engine';
import { registerFleet } from '../../src/lib/server/fleet/register';
import { createChannel } from '../../src/lib/server/notify/channels';
import { registerNotify, sendTest, startNotify, stopNotify } from '../../src/lib/server/notify/register';
import { metricsRegistry } from '../../src/lib/server/engine';
import { updateNotifySettings } from '../../src/lib/server/notify/settings';
import { verifySignature } from '../../src/lib/server/notify/sign';
import { EventWatcher, watchConditions } from '../../src/lib/server/notify/watch';
import { backends } from '../support/databases';
import { waitFor, waitForRun } from '../support/engine';
import { sequenceFlow } from '../support/flows';
import { startReceiver } from '../support/receiver';
import { startSimFleet, type SimFleet } from '../support/sim-fleet';

registerFlow(sequenceFlow);
registerFleet();
registerNotify();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SECRET = 'receiver-shared-secret-0123456789';

describe.each(backends)('notifications on $name', ({ open }) => {
	let handle: DatabaseHandle;
	let fleet: SimFleet;
	let receiver: Awaited<ReturnType<typeof startReceiver>>;
	/** A second console's follower of the same events, sharing the database. */
	const otherConsole = new EventWatcher();

	beforeAll(async () => {
		handle = await open();
		useDatabase(handle);
		useMasterKey(randomBytes(32));
		fleet = await startSimFleet(2, 'ntf');
		receiver = await startReceiver((r, nth) => {
			if (r.path.startsWith('/flaky')) return nth <= 3 ? { status: 500, body: 'not yet' } : { status: 200 };
			if (r.path.startsWith('/hang')) return undefined;
			return { status: 200, body: 'thanks' };
		});
		await startEngine({ concurrency: 20, leaseMs: 5_000, sweepMs: 1_000 });
		await updateNotifySettings(systemActor, { allowPrivateTargets: true });
		await startNotify({
			retryDelaySeconds: 1,
			retryBackoff: false,
			retryLimit: 5,
			timeoutMs: 1_000,
			watchSeconds: 0,
			consoleUrl: 'https://flotilla.example'
		});
		otherConsole.start();
	}, 60_000);

	afterAll(async () => {
		await otherConsole.stop();
		await stopNotify();
		await stopEngine();
		await receiver?.close();
		await fleet?.stop();
		useMasterKey(undefined);
		useDatabase(undefined);
		await handle?.close();
	});

	const onPath = (p: string) => receiver.received.filter((r) => r.path === p);
	const failingRun = () =>
		createRun(systemActor, {
			kind: 'test-sequence',
			title: 'fails on purpose',
			nodeIds: fleet.nodeIds.slice(0, 1),
			params: { fail_at: 2 }
		});

	it('sends one signed webhook and one Slack message per event and channel, though two consoles heard it', async () => {
		const hook = await createChannel(systemActor, {
			name: `hook-${Date.now()}`,
			kind: 'webhook',
			url: `${receiver.url}/hook`,
			secret: SECRET,
			events: ['run.failed'],
			security_days: 7,
			reboot_days: 3,
			unreachable_minutes: 15,
			enabled: true
		});
		expect(hook.secret).toBe(SECRET);
		await createChannel(systemActor, {
			name: `slack-${Date.now()}`,
			kind: 'slack',
			url: `${receiver.url}/slack`,
			events: ['run.failed'],
			security_days: 7,
			reboot_days: 3,
			unreachable_minutes: 15,
			enabled: true
		});
		const run = await failingRun();
		await waitForRun(run.id, ['failed']);
		await waitFor('both deliveries', async () => onPath('/hook').length >= 1 && onPath('/slack').length >= 1);
		// Both followers have read past the event by now; nothing more may come.
		await sleep(2_500);
		expect(onPath('/hook')).toHaveLength(1);
		expect(onPath('/slack')).toHaveLength(1);

		const [delivery] = onPath('/hook');
		const signature = String(delivery!.headers['x-flotilla-signature']);
		expect(verifySignature(SECRET, signature, delivery!.body, { toleranceSeconds: 300 })).toBe(true);
		expect(verifySignature('some-other-secret-1234', signature, delivery!.body, { toleranceSeconds: 300 })).toBe(false);
		const body = JSON.parse(delivery!.body);
		expect(body).toMatchObject({
			event: 'run.failed',
			title: `Run #${run.number} failed`,
			link: `https://flotilla.example/runs/${run.id}`,
			data: { run_id: run.id, state: 'failed' }
		});
		expect(body.delivery_id).toBe(delivery!.headers['x-flotilla-delivery']);

		const slack = JSON.parse(onPath('/slack')[0]!.body) as { text: string };
		expect(slack.text).toContain(`*Run #${run.number} failed*`);
		expect(slack.text).toContain(`<https://flotilla.example/runs/${run.id}|Open in Flotilla>`);
		expect(onPath('/slack')[0]!.headers['x-flotilla-signature']).toBeUndefined();

		const rows = await db().select().from(notifyDeliveries).where(eq(notifyDeliveries.channelId, hook.channel.id));
		expect(rows).toHaveLength(1);
		expect(rows[0]).toMatchObject({ state: 'delivered', attempts: 1, lastStatus: 200, lastResponse: 'thanks' });
	}, 60_000);

	it('retries a receiver that answers 500 three times, and delivers once it recovers', async () => {
		const { channel } = await createChannel(systemActor, {
			name: `flaky-${Date.now()}`,
			kind: 'webhook',
			url: `${receiver.url}/flaky`,
			events: ['run.failed'],
			security_days: 7,
			reboot_days: 3,
			unreachable_minutes: 15,
			enabled: true
		});
		const run = await failingRun();
		await waitForRun(run.id, ['failed']);
		const delivered = await waitFor(
			'the delivery after the receiver recovered',
			async () => {
				const [row] = await db().select().from(notifyDeliveries).where(eq(notifyDeliveries.channelId, channel.id));
				return row?.state === 'delivered' ? row : undefined;
			},
			30_000
		);
		expect(delivered).toMatchObject({ attempts: 4, lastStatus: 200 });
		await sleep(1_500);
		// The same event every time, and nothing after the one that was accepted.
		const got = onPath('/flaky');
		expect(got).toHaveLength(4);
		expect(new Set(got.map((r) => r.headers['x-flotilla-delivery'])).size).toBe(1);
	}, 60_000);

	it('a receiver that hangs costs the runs nothing; its failures show with the last response', async () => {
		const { channel } = await createChannel(systemActor, {
			name: `hang-${Date.now()}`,
			kind: 'webhook',
			url: `${receiver.url}/hang`,
			events: ['run.failed'],
			security_days: 7,
			reboot_days: 3,
			unreachable_minutes: 15,
			enabled: true
		});
		const first = await failingRun();
		await waitForRun(first.id, ['failed']);
		await waitFor('the hanging request', async () => receiver.open() > 0);
		// While the receiver holds a delivery open, another run goes through from start to end.
		const second = await createRun(systemActor, {
			kind: 'test-sequence',
			title: 'all good',
			nodeIds: fleet.nodeIds,
			params: {}
		});
		await waitForRun(second.id, ['succeeded']);
		expect(onPath('/hang').length).toBeGreaterThanOrEqual(1);
		const row = await waitFor('a timed-out attempt on the channel', async () => {
			const [r] = await db().select().from(notifyDeliveries).where(eq(notifyDeliveries.channelId, channel.id));
			return r?.lastResponse ? r : undefined;
		});
		expect(row.state).toBe('queued');
		expect(row.lastStatus).toBeNull();
		expect(row.lastResponse).toBe('no answer within 1000 ms');
	}, 60_000);

	it('refuses a private target unless allowed (audited), and a delivery to one once the allowance is gone', async () => {
		const { channel } = await createChannel(systemActor, {
			name: `test-${Date.now()}`,
			kind: 'webhook',
			url: `${receiver.url}/test`,
			events: ['rollout.paused'],
			security_days: 7,
			reboot_days: 3,
			unreachable_minutes: 15,
			enabled: true
		});
		await updateNotifySettings(systemActor, { allowPrivateTargets: false });
		try {
			await expect(
				createChannel(systemActor, {
					name: `refused-${Date.now()}`,
					kind: 'webhook',
					url: 'http://localhost:9/x',
					events: ['run.failed'],
					security_days: 7,
					reboot_days: 3,
					unreachable_minutes: 15,
					enabled: true
				})
			).rejects.toMatchObject({ code: 'validation_failed', fields: { url: expect.stringContaining('private') } });
			const id = await sendTest(systemActor, channel.id);
			const row = await waitFor('the refused attempt', async () => {
				const [r] = await db().select().from(notifyDeliveries).where(eq(notifyDeliveries.id, id));
				return r?.lastResponse ? r : undefined;
			});
			expect(row.lastResponse).toMatch(/^refused: the target resolves to 127\.0\.0\.1/);
			expect(onPath('/test')).toHaveLength(0);
		} finally {
			await updateNotifySettings(systemActor, { allowPrivateTargets: true });
		}
		const actions = (await db().select({ action: auditLog.action }).from(auditLog)).map((r) => r.action);
		expect(actions).toEqual(
			expect.arrayContaining(['notify.settings', 'notify.channel.create', 'notify.channel.test'])
		);
		// Allowed again, the retry gets through.
		await waitFor('the test message', async () => onPath('/test').length === 1, 15_000);
		expect(JSON.parse(onPath('/test')[0]!.body)).toMatchObject({ event: 'test' });
	}, 60_000);

	it('tells of a node unreachable past the channel threshold, once per occurrence', async () => {
		const { channel } = await createChannel(systemActor, {
			name: `nodes-${Date.now()}`,
			kind: 'webhook',
			url: `${receiver.url}/nodes`,
			events: ['node.unreachable', 'host_key.changed'],
			security_days: 7,
			reboot_days: 3,
			unreachable_minutes: 10,
			enabled: true
		});
		const [a, b] = fleet.nodeIds;
		await db().update(nodes).set({ reachable: false, lastError: 'connection refused' }).where(eq(nodes.id, a!));
		await db().update(nodes).set({ hostKeyStatus: 'changed' }).where(eq(nodes.id, b!));
		const t0 = new Date();
		expect(await metricsRegistry.metrics()).toMatch(/^flotilla_nodes_unreachable 1$/m);
		await watchConditions(t0);
		// The host key is news at once; the unreachable node only after 10 minutes.
		await waitFor('the host key message', async () => onPath('/nodes').length === 1);
		expect(JSON.parse(onPath('/nodes')[0]!.body)).toMatchObject({ event: 'host_key.changed', data: { node_id: b } });
		await watchConditions(new Date(t0.getTime() + 9 * 60_000));
		await watchConditions(new Date(t0.getTime() + 11 * 60_000));
		await watchConditions(new Date(t0.getTime() + 12 * 60_000));
		await waitFor('the unreachable message', async () => onPath('/nodes').length === 2);
		await sleep(1_500);
		expect(onPath('/nodes')).toHaveLength(2);
		expect(JSON.parse(onPath('/nodes')[1]!.body)).toMatchObject({
			event: 'node.unreachable',
			text: 'connection refused',
			data: { node_id: a }
		});
		const rows = await db().select().from(notifyDeliveries).where(eq(notifyDeliveries.channelId, channel.id));
		expect(rows).toHaveLength(2);
		await db().update(nodes).set({ reachable: true, hostKeyStatus: 'pinned' }).where(eq(nodes.id, a!));
		await db().update(nodes).set({ hostKeyStatus: 'pinned' }).where(eq(nodes.id, b!));
		await watchConditions();
	}, 60_000);
});
