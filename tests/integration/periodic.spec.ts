import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PgBoss } from 'pg-boss';
import { useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import {
	periodicQueueName,
	schedulePeriodic,
	startBoss,
	stopBoss,
	stopPeriodic
} from '../../src/lib/server/engine/runtime';
import { backends } from '../support/databases';
import { waitFor } from '../support/engine';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each(backends)('periodic jobs through pg-boss on $name', ({ open }) => {
	let handle: DatabaseHandle;
	let boss: PgBoss;

	beforeAll(async () => {
		handle = await open();
		useDatabase(handle);
		boss = await startBoss({ concurrency: 4, leaseMs: 5_000, sweepMs: 1_000 });
	}, 60_000);

	afterAll(async () => {
		await stopBoss();
		useDatabase(undefined);
		await handle?.close();
	});

	it('runs a turn every period, never two at once, and carries on after a turn that failed', async () => {
		let running = 0;
		let overlapped = false;
		const turns: number[] = [];
		await schedulePeriodic('every-second', 1, async () => {
			overlapped ||= running > 0;
			running++;
			turns.push(Date.now());
			try {
				// The first turn outlasts its period: the next waits for it instead of running beside it.
				await sleep(turns.length === 1 ? 1_500 : 50);
				if (turns.length === 2) throw new Error('this turn fails');
				return { turn: turns.length };
			} finally {
				running--;
			}
		});
		await waitFor('four turns', async () => turns.length >= 4, 15_000);
		await stopPeriodic();
		expect(overlapped).toBe(false);
		const count = turns.length;
		await sleep(2_000);
		expect(turns.length).toBe(count);
		// pg-boss keeps each turn's outcome: what the handler returned, or that it failed.
		const jobs = await boss.findJobs(periodicQueueName('every-second'));
		expect(jobs.some((j) => j.state === 'failed')).toBe(true);
		expect(jobs.some((j) => j.state === 'completed' && (j.output as { turn?: number })?.turn === 1)).toBe(true);
	}, 30_000);

	it("runs a period's turn once, whoever sends it: another console's tick in the same period adds nothing", async () => {
		let turns = 0;
		await schedulePeriodic('hourly', 3_600, async () => {
			turns++;
			return {};
		});
		await waitFor('the first turn', async () => turns === 1, 15_000);
		// What every other console's ticker does during this hour.
		expect(await boss.send(periodicQueueName('hourly'), {}, { singletonSeconds: 3_600 })).toBeNull();
		await sleep(1_500);
		expect(turns).toBe(1);
		await stopPeriodic();
	}, 30_000);

	it('stopping waits for the turn this console is running; 0 seconds schedules nothing', async () => {
		let release: () => void = () => {};
		let started = false;
		let ended = false;
		await schedulePeriodic('slow', 60, async () => {
			started = true;
			await new Promise<void>((r) => (release = r));
			ended = true;
			return {};
		});
		await waitFor('the turn to start', async () => started, 15_000);
		const stopping = stopPeriodic();
		await sleep(200);
		expect(ended).toBe(false);
		release();
		await stopping;
		expect(ended).toBe(true);

		await schedulePeriodic('off', 0, async () => {
			throw new Error('never runs');
		});
		expect(await boss.getQueue(periodicQueueName('off'))).toBeNull();
	}, 30_000);
});
