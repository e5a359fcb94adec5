import { describe, expect, it } from 'vitest';
import { fleetUpdateSchema, semverOf } from './appliances';
import { batchRolloutSchema } from './releases';

const body = {
	version: 'v44',
	iso_url: 'https://updates.example.net/v44.iso',
	sha256: 'a'.repeat(64),
	rollout: {
		strategy: 'staged',
		stages: [
			{ percent: 5, delay_hours: 24 },
			{ percent: 25, delay_hours: 24 },
			{ percent: 100, delay_hours: 0 }
		]
	},
	maintenance_window: { start: '02:00', end: '05:00', timezone: 'America/New_York' }
};

describe('the fleet update body', () => {
	it('takes the body as fleet-update scripts write it, every day in the window when none are named', () => {
		const parsed = fleetUpdateSchema.parse(body);
		expect(parsed.rollout.stages!.map((s) => s.delay_hours)).toEqual([24, 24, 0]);
		expect(parsed.maintenance_window!.days).toHaveLength(7);
	});

	it('names the field of each problem, nested ones by their path', () => {
		const cases: [unknown, string][] = [
			[{ ...body, version: '44.x' }, 'version'],
			[{ ...body, iso_url: 'file:///etc/passwd' }, 'iso_url'],
			[{ ...body, sha256: 'abc123...' }, 'sha256'],
			[{ ...body, rollout: { strategy: 'big-bang' } }, 'rollout.strategy'],
			[
				{ ...body, rollout: { strategy: 'staged', stages: [{ percent: 100, delay_hours: 500 }] } },
				'rollout.stages.0.delay_hours'
			],
			[
				{ ...body, maintenance_window: { ...body.maintenance_window, timezone: 'Mars/Olympus' } },
				'maintenance_window.timezone'
			],
			[{ ...body, maintenance_window: { ...body.maintenance_window, end: '02:00' } }, 'maintenance_window.end'],
			[{ ...body, target: {} }, 'target']
		];
		for (const [input, field] of cases) {
			const parsed = fleetUpdateSchema.safeParse(input);
			expect(parsed.success, field).toBe(false);
			const paths = parsed.error!.issues.map((i) =>
				i.path.length ? i.path.join('.') : String((i as { keys?: string[] }).keys)
			);
			expect(paths, field).toContain(field);
		}
	});

	it('reads versions as release scripts write them', () => {
		expect(semverOf('v44')).toBe('44.0.0');
		expect(semverOf('1.4')).toBe('1.4.0');
		expect(semverOf('v1.4.0')).toBe('1.4.0');
		expect(semverOf('2.0-rc.1')).toBe('2.0.0-rc.1');
	});
});

describe('the batch rollout body', () => {
	it('takes manifestId, channel and batchSize, and nothing else', () => {
		const id = '3f1c2a4e-8b7d-4c1a-9e2f-5a6b7c8d9e0f';
		expect(batchRolloutSchema.parse({ manifestId: id, channel: 'stable', batchSize: 5 })).toEqual({
			manifestId: id,
			channel: 'stable',
			batchSize: 5
		});
		expect(batchRolloutSchema.safeParse({ manifestId: id, channel: 'nightly', batchSize: 5 }).success).toBe(false);
		expect(batchRolloutSchema.safeParse({ manifestId: id, channel: 'stable', batchSize: 0 }).success).toBe(false);
		expect(batchRolloutSchema.safeParse({ manifestId: id, channel: 'stable', batchSize: 5, x: 1 }).success).toBe(false);
	});
});
