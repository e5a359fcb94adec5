import { describe, expect, it } from 'vitest';
import { newHostModel } from './host';
import { bootAppliance, hasSlots, installSlots } from './slots';

const state = (files: Map<string, string>) =>
	Object.fromEntries(
		['active', 'next', 'good', 'tries', 'boots'].map((fact) => [fact, files.get(`/boot/flotilla/${fact}`)?.trim()])
	);

describe('simulated A/B boot logic (as appliance/flotilla-slot and the testbed supervisor do it)', () => {
	it('boots the next slot and counts the boots of an uncommitted one', () => {
		const model = newHostModel('edge');
		installSlots(model, { a: 'image 1\n', b: 'image 2\n' });
		model.files.set('/boot/flotilla/next', 'b\n');
		expect(bootAppliance(model)).toBe(true);
		expect(state(model.files)).toEqual({ active: 'b', next: 'b', good: 'a', tries: '1', boots: '1' });
	});

	it('falls back to the good slot after 3 failed boots of the next one', () => {
		const model = newHostModel('edge');
		installSlots(model, { a: 'image 1\n', b: 'image 2\n' });
		model.files.set('/boot/flotilla/next', 'b\n');
		model.faults.failBoot = ['b'];
		expect(bootAppliance(model)).toBe(true);
		expect(state(model.files)).toEqual({ active: 'a', next: 'a', good: 'a', tries: '0', boots: '4' });
	});

	it('stays down when the good slot cannot boot, or every boot fails', () => {
		const model = newHostModel('edge');
		installSlots(model, { a: 'image 1\n', b: '' });
		model.faults.failBoot = true;
		expect(bootAppliance(model)).toBe(false);
		const server = newHostModel('app');
		expect(hasSlots(server)).toBe(false);
		expect(bootAppliance(server)).toBe(true);
		server.faults.failBoot = true;
		expect(bootAppliance(server)).toBe(false);
	});
});
