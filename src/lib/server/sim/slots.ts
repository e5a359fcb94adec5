import { createHash, createPublicKey, verify } from 'node:crypto';
import { bytesOf, type CommandIO, type HostModel } from './host';

/**
 * The A/B slots of a simulated appliance: the same state files under /boot/flotilla and the same answers as
 * the appliance's own helper (appliance/flotilla-slot), which the testbed's hosts run. Kept in the model's
 * files, so `cat /boot/flotilla/active` and `sha256sum /boot/flotilla/slot-b.img` agree with it.
 */
export type Slot = 'a' | 'b';

const dir = '/boot/flotilla';
const conf = '/etc/flotilla';
const maxTries = 3;

/**
 * Installs the slots as the testbed does: slot a booted and committed, each slot holding an image. The release
 * keys (PEM public keys) are the appliance's own, put there at installation, as tests/integration/appliances
 * does on the testbed: with them, only images signed by one of them are verified.
 */
export function installSlots(
	model: HostModel,
	images: Record<Slot, string>,
	options: { releaseKeys?: string[]; minVersion?: string } = {}
): void {
	for (const fact of ['active', 'next', 'good']) model.files.set(`${dir}/${fact}`, 'a\n');
	model.files.set(`${dir}/tries`, '0\n');
	model.files.set(`${dir}/boots`, '0\n');
	model.files.set(`${dir}/slot-a.img`, images.a);
	model.files.set(`${dir}/slot-b.img`, images.b);
	model.gate = [{ name: '10-appliance', unit: 'appliance' }];
	model.units.set('appliance', 'active');
	options.releaseKeys?.forEach((pem, i) => model.files.set(`${conf}/release-keys/release-${i + 1}.pem`, pem));
	if (options.minVersion) model.files.set(`${conf}/min-version`, `${options.minVersion}\n`);
}

export function hasSlots(model: HostModel): boolean {
	return model.files.has(`${dir}/active`);
}

const get = (model: HostModel, fact: string) => (model.files.get(`${dir}/${fact}`) ?? '').trim();
const put = (model: HostModel, fact: string, value: string | number) => model.files.set(`${dir}/${fact}`, `${value}\n`);
const isSlot = (value: string | undefined): value is Slot => value === 'a' || value === 'b';
const imageOf = (model: HostModel, slot: Slot) => model.files.get(`${dir}/slot-${slot}.img`) ?? '';
const remove = (model: HostModel, fact: string) => model.files.delete(`${dir}/${fact}`);
const now = () => Math.floor(Date.now() / 1000);
const sha256Of = (model: HostModel, slot: Slot) =>
	createHash('sha256')
		.update(bytesOf(model, `${dir}/slot-${slot}.img`))
		.digest('hex');

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
			put(
				model,
				'fallback',
				`boot: slot ${next} was booted ${maxTries} times without passing the health gate; fell back to slot ${good}`
			);
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
		if (!fails) {
			// The booted system starts its service; a broken build's does not, and the gate sees that.
			if (slot !== undefined) {
				const broken = model.faults.brokenImages?.includes(sha256Of(model, slot));
				model.units.set('appliance', broken ? 'failed' : 'active');
			}
			return true;
		}
		if (slot === undefined || slot === get(model, 'good')) return false;
	}
}

async function gate(model: HostModel, io: CommandIO): Promise<boolean> {
	const failed: string[] = [];
	for (const check of model.gate) {
		const healthy = !model.faults.failHealth && model.units.get(check.unit) === 'active';
		await io.out(`gate: ${check.name} ${healthy ? 'ok' : 'failed'}`);
		if (!healthy) failed.push(check.name);
	}
	if (hasSlots(model)) {
		put(
			model,
			'last-gate',
			failed.length ? `${get(model, 'active')} failed ${failed.join(' ')}` : `${get(model, 'active')} passed`
		);
	}
	return !failed.length;
}

const VERSION = /^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/;

/** As the helper's `version_below`: a pre-release ranks below its release; two pre-releases compare as bytes. */
export function versionBelow(a: string, b: string): boolean {
	const split = (v: string) => {
		const core = v.split('+')[0]!;
		const dash = core.indexOf('-');
		return {
			fields: (dash < 0 ? core : core.slice(0, dash)).split('.').map(Number),
			pre: dash < 0 ? '' : core.slice(dash + 1)
		};
	};
	const x = split(a);
	const y = split(b);
	for (let i = 0; i < 3; i++) {
		if (x.fields[i]! < y.fields[i]!) return true;
		if (x.fields[i]! > y.fields[i]!) return false;
	}
	if (x.pre && !y.pre) return true;
	return Boolean(x.pre && y.pre && x.pre !== y.pre && Buffer.compare(Buffer.from(x.pre), Buffer.from(y.pre)) < 0);
}

/** The release keys installed on the appliance, in the order the helper's glob reads them. */
function releaseKeys(model: HostModel): [string, string][] {
	const prefix = `${conf}/release-keys/`;
	return [...model.files.entries()]
		.filter(([path]) => path.startsWith(prefix) && path.endsWith('.pem') && !path.slice(prefix.length).includes('/'))
		.sort(([p], [q]) => (p < q ? -1 : p > q ? 1 : 0))
		.map(([path, pem]) => [path.slice(prefix.length), pem]);
}

function signedBy(pem: string, sha: string, signature: string): boolean {
	try {
		return verify(null, Buffer.from(sha), createPublicKey(pem), Buffer.from(signature, 'hex'));
	} catch {
		return false;
	}
}

function report(model: HostModel): string[] {
	return [
		...['active', 'next', 'good', 'tries', 'boots'].map((fact) => `${fact}=${get(model, fact)}`),
		`fallback=${get(model, 'fallback')}`,
		`skip_window=${model.files.has(`${dir}/skip-window`) ? 1 : 0}`,
		`verified_a=${get(model, 'slot-a.verified')}`,
		`verified_b=${get(model, 'slot-b.verified')}`,
		`last_gate=${get(model, 'last-gate')}`
	];
}

/** `flotilla-slot <command> [args]`, answered as appliance/flotilla-slot answers it. */
export async function flotillaSlot(args: string[], io: CommandIO, model: HostModel): Promise<number> {
	const [command = '', slot] = args;
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
		case 'report':
		case '--status':
			for (const line of report(model)) await io.out(line);
			return 0;
		case 'clear':
			if (!isSlot(slot)) return notSlot();
			if (slot === get(model, 'active'))
				return fail(`slot ${slot} is booted now: only the standby slot can be cleared`);
			if (slot === get(model, 'good'))
				return fail(`slot ${slot} is the good slot: it is kept until another is committed`);
			model.files.set(`${dir}/slot-${slot}.img`, '');
			model.binaryFiles.delete(`${dir}/slot-${slot}.img`);
			remove(model, `slot-${slot}.verified`);
			await io.out(`slot ${slot} cleared`);
			return 0;
		case 'verify': {
			if (!isSlot(slot)) return notSlot();
			if (args.length !== 5) return fail('verify needs a slot, the sha256, the signature and the version');
			const [, , sha, signature, version] = args as [string, Slot, string, string, string];
			if (!/^[0-9a-f]{64}$/.test(sha)) return fail(`not a sha256: '${sha}'`);
			if (!/^[0-9a-f]{128}$/.test(signature)) return fail(`not an Ed25519 signature in hex: '${signature}'`);
			if (!VERSION.test(version)) return fail(`not a version: '${version}'`);
			if (slot === get(model, 'active')) return fail(`slot ${slot} is booted now: only the standby slot is verified`);
			remove(model, `slot-${slot}.verified`);
			const floor = model.files.get(`${conf}/min-version`)?.trim();
			if (floor !== undefined) {
				if (!VERSION.test(floor)) return fail(`${conf}/min-version is not a version: '${floor}'`);
				if (versionBelow(version, floor)) {
					return fail(`version ${version} is below the minimum version ${floor} (rollback protection)`);
				}
			}
			const actual = sha256Of(model, slot);
			if (actual !== sha) return fail(`sha256 mismatch: slot ${slot} holds ${actual}, expected ${sha}`);
			await io.out(`sha256: ${actual}`);
			const keys = releaseKeys(model);
			const by = keys.find(([, pem]) => signedBy(pem, sha, signature));
			if (!by) {
				return fail(
					keys.length
						? `bad signature: the image's sha256 is signed by none of the release keys in ${conf}/release-keys`
						: `no release key in ${conf}/release-keys: refusing an image that cannot be verified`
				);
			}
			await io.out(`signature: verified by ${by[0]}`);
			put(model, `slot-${slot}.verified`, `${sha} ${version}`);
			await io.out(`slot ${slot} verified: version ${version}`);
			return 0;
		}
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
			if (
				slot !== get(model, 'good') &&
				releaseKeys(model).length > 0 &&
				!model.files.has(`${dir}/slot-${slot}.verified`)
			) {
				return fail(`slot ${slot} was not verified (flotilla-slot verify)`);
			}
			put(model, 'next', slot);
			put(model, 'tries', 0);
			remove(model, 'fallback');
			await io.out(`next boot: slot ${slot}`);
			return 0;
		case 'gate':
			return (await gate(model, io)) ? 0 : 1;
		case 'commit': {
			const active = get(model, 'active');
			if (!(await gate(model, io))) return fail(`health gate failed: slot ${active} not committed`);
			if (get(model, 'good') !== active) {
				put(model, 'watch', now());
				remove(model, 'unreachable-since');
			}
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
		case '--rollback': {
			const previous = get(model, 'active') === 'a' ? 'b' : 'a';
			if (imageOf(model, previous) === '') return fail(`slot ${previous} has no image to go back to`);
			put(model, 'next', previous);
			put(model, 'tries', 0);
			await io.out(
				`next boot: slot ${previous} (it must pass the health gate, or the appliance falls back to slot ${get(model, 'good')})`
			);
			return 0;
		}
		case '--skip-window':
			if (slot === '--cancel') {
				remove(model, 'skip-window');
				await io.out('the next maintenance window is not skipped');
			} else {
				put(model, 'skip-window', now());
				await io.out('the next maintenance window is skipped');
			}
			return 0;
		default:
			return fail(
				`unknown command '${command}' (status, report, path, standby, clear, verify, set-next, gate, commit, revert, boot, boot-gate, watchdog, init, --status, --check, --rollback, --skip-window)`
			);
	}
}
