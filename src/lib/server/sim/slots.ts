import type { CommandIO, HostModel } from './host';

/**
 * The A/B slots of a simulated appliance: the same state files under /boot/flotilla and the same answers as
 * the appliance's own helper (appliance/flotilla-slot), which the testbed's hosts run. Kept in the model's
 * files, so `cat /boot/flotilla/active` and `sha256sum /boot/flotilla/slot-b.img` agree with it.
 */
export type Slot = 'a' | 'b';

const dir = '/boot/flotilla';
const maxTries = 3;

/** Installs the slots as the testbed does: slot a booted and committed, each slot holding an image. */
export function installSlots(model: HostModel, images: Record<Slot, string>): void {
	for (const fact of ['active', 'next', 'good']) model.files.set(`${dir}/${fact}`, 'a\n');
	model.files.set(`${dir}/tries`, '0\n');
	model.files.set(`${dir}/boots`, '0\n');
	model.files.set(`${dir}/slot-a.img`, images.a);
	model.files.set(`${dir}/slot-b.img`, images.b);
	model.gate = [{ name: '10-appliance', unit: 'appliance' }];
	model.units.set('appliance', 'active');
}

export function hasSlots(model: HostModel): boolean {
	return model.files.has(`${dir}/active`);
}

const get = (model: HostModel, fact: string) => (model.files.get(`${dir}/${fact}`) ?? '').trim();
const put = (model: HostModel, fact: string, value: string | number) => model.files.set(`${dir}/${fact}`, `${value}\n`);
const isSlot = (value: string | undefined): value is Slot => value === 'a' || value === 'b';
const imageOf = (model: HostModel, slot: Slot) => model.files.get(`${dir}/slot-${slot}.img`) ?? '';

/** The bootloader's step (`flotilla-slot boot`): counts boots of an uncommitted slot, falls back after 3. */
export function bootSlot(model: HostModel): { slot: Slot; message?: string } {
	put(model, 'boots', Number(get(model, 'boots')) + 1);
	let next = get(model, 'next') as Slot;
	const good = get(model, 'good') as Slot;
	let message: string | undefined;
	if (next !== good) {
		let tries = Number(get(model, 'tries')) + 1;
		if (tries > maxTries) {
			message = `flotilla-slot: slot ${next} was booted ${maxTries} times without a commit; falling back to slot ${good}`;
			next = good;
			put(model, 'next', good);
			tries = 0;
		}
		put(model, 'tries', tries);
	}
	put(model, 'active', next);
	return { slot: next, message };
}

/**
 * A boot as the testbed's supervisor plays it: a slot fails when the fail-boot fault names it (or names
 * none) or its image is empty; an uncommitted slot is booted again until the helper falls back. False when
 * the host stays down.
 */
export function bootAppliance(model: HostModel): boolean {
	const failBoot = model.faults.failBoot;
	for (;;) {
		const slot = hasSlots(model) ? bootSlot(model).slot : undefined;
		const faulted = failBoot === true || (slot !== undefined && Array.isArray(failBoot) && failBoot.includes(slot));
		const fails = faulted || (slot !== undefined && imageOf(model, slot) === '');
		if (!fails) return true;
		if (slot === undefined || slot === get(model, 'good')) return false;
	}
}

async function gate(model: HostModel, io: CommandIO): Promise<boolean> {
	let ok = true;
	for (const check of model.gate) {
		const healthy = !model.faults.failHealth && model.units.get(check.unit) === 'active';
		await io.out(`gate: ${check.name} ${healthy ? 'ok' : 'failed'}`);
		ok &&= healthy;
	}
	return ok;
}

/** `flotilla-slot <command> [slot]`, answered as appliance/flotilla-slot answers it. */
export async function flotillaSlot([command = '', slot]: string[], io: CommandIO, model: HostModel): Promise<number> {
	if (!hasSlots(model)) {
		await io.err('bash: line 1: flotilla-slot: command not found');
		return 127;
	}
	const fail = async (message: string) => (await io.err(`flotilla-slot: ${message}`), 1);
	const notSlot = () => fail(`not a slot: '${slot ?? ''}' (a or b)`);
	switch (command) {
		case 'status':
			for (const fact of ['active', 'next', 'good', 'tries', 'boots']) await io.out(`${fact}=${get(model, fact)}`);
			return 0;
		case 'path':
			if (!isSlot(slot)) return notSlot();
			await io.out(`${dir}/slot-${slot}.img`);
			return 0;
		case 'standby':
			await io.out(get(model, 'active') === 'a' ? 'b' : 'a');
			return 0;
		case 'set-next':
			if (!isSlot(slot)) return notSlot();
			if (imageOf(model, slot) === '') return fail(`slot ${slot} has no image`);
			put(model, 'next', slot);
			put(model, 'tries', 0);
			await io.out(`next boot: slot ${slot}`);
			return 0;
		case 'gate':
			return (await gate(model, io)) ? 0 : 1;
		case 'commit': {
			const active = get(model, 'active');
			if (!(await gate(model, io))) return fail(`health gate failed: slot ${active} not committed`);
			put(model, 'good', active);
			put(model, 'next', active);
			put(model, 'tries', 0);
			await io.out(`committed slot ${active}`);
			return 0;
		}
		case 'revert': {
			const good = get(model, 'good');
			put(model, 'next', good);
			put(model, 'tries', 0);
			await io.out(`next boot: slot ${good}`);
			return 0;
		}
		case 'boot': {
			const booted = bootSlot(model);
			if (booted.message) await io.err(booted.message);
			await io.out(booted.slot);
			return 0;
		}
		default:
			return fail(`unknown command '${command}' (status, path, standby, set-next, gate, commit, revert, boot, init)`);
	}
}
