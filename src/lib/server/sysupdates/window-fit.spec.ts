import { describe, expect, it } from 'vitest';
import { automaticWork, shortfall, workSeconds } from './window-fit';

describe('whether a window holds the work', () => {
	it('counts a base, each package and the wait for a reboot', () => {
		expect(workSeconds({ packages: 0, mayReboot: false })).toBe(120);
		expect(workSeconds({ packages: 3, mayReboot: false })).toBe(210);
		expect(workSeconds({ packages: 3, mayReboot: true })).toBe(810);
	});

	it('the automatic work follows the policy: full installs and may reboot, security only reboots, manual nothing', () => {
		expect(automaticWork('full', 4, false)).toEqual({ packages: 4, mayReboot: true });
		expect(automaticWork('full', 0, false)).toEqual({ packages: 0, mayReboot: false });
		expect(automaticWork('security', 4, false)).toEqual({ packages: 0, mayReboot: false });
		expect(automaticWork('security', 4, true)).toEqual({ packages: 0, mayReboot: true });
		expect(automaticWork('manual', 4, true)).toEqual({ packages: 0, mayReboot: false });
	});

	it('a shortfall only when the work outlasts the window, exactly fitting work fits', () => {
		const from = new Date('2026-03-09T04:00:00Z');
		expect(shortfall(3600, from, new Date('2026-03-09T05:00:00Z'))).toBeNull();
		expect(shortfall(3601, from, new Date('2026-03-09T05:00:00Z'))).toEqual({ needsMinutes: 61, windowMinutes: 60 });
		expect(shortfall(810, new Date('2026-03-09T04:58:00Z'), new Date('2026-03-09T05:00:00Z'))).toEqual({
			needsMinutes: 14,
			windowMinutes: 2
		});
	});
});
