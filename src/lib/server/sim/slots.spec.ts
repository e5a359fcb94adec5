import { describe, expect, it } from 'vitest';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { newHostModel, type CommandIO } from './host';
import { bootAppliance, flotillaSlot, hasSlots, installSlots, versionBelow } from './slots';

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

describe('simulated slot helper verbs (as appliance/flotilla-slot answers them)', () => {
	const io = () => {
		const out: string[] = [];
		const err: string[] = [];
		return {
			out,
			err,
			io: {
				out: async (l: string) => void out.push(l),
				err: async (l: string) => void err.push(l)
			} as unknown as CommandIO
		};
	};
	const key = generateKeyPairSync('ed25519');
	const pem = key.publicKey.export({ format: 'pem', type: 'spki' }).toString();

	it('a broken image boots but its service fails, so the gate refuses to commit it', async () => {
		const model = newHostModel('edge');
		installSlots(model, { a: 'image 1\n', b: 'image 2 (broken)\n' });
		model.faults.brokenImages = [createHash('sha256').update('image 2 (broken)\n').digest('hex')];
		model.files.set('/boot/flotilla/next', 'b\n');
		expect(bootAppliance(model)).toBe(true);
		const commit = io();
		expect(await flotillaSlot(['commit'], commit.io, model)).toBe(1);
		expect(commit.err).toEqual(['flotilla-slot: health gate failed: slot b not committed']);
		model.files.set('/boot/flotilla/next', 'a\n');
		expect(bootAppliance(model)).toBe(true);
		expect(await flotillaSlot(['commit'], io().io, model)).toBe(0);
	});

	it('verify checks the minimum version, the sha256 and the signature with the appliance’s own keys', async () => {
		const model = newHostModel('edge');
		installSlots(model, { a: 'image 1\n', b: 'image 2\n' }, { releaseKeys: [pem], minVersion: '1.2.0' });
		const sha = createHash('sha256').update('image 2\n').digest('hex');
		const good = sign(null, Buffer.from(sha), key.privateKey).toString('hex');
		const other = sign(null, Buffer.from(sha), generateKeyPairSync('ed25519').privateKey).toString('hex');
		const attempt = async (...args: string[]) => {
			const r = io();
			return [await flotillaSlot(['verify', ...args], r.io, model), r.err.join('') || r.out.at(-1)];
		};
		expect(await flotillaSlot(['set-next', 'b'], io().io, model)).toBe(1);
		expect(await attempt('b', sha, good, '1.1.9')).toEqual([
			1,
			'flotilla-slot: version 1.1.9 is below the minimum version 1.2.0 (rollback protection)'
		]);
		expect(await attempt('b', sha.replace(/^./, '0'), good, '1.3.0')).toEqual([
			1,
			`flotilla-slot: sha256 mismatch: slot b holds ${sha}, expected ${sha.replace(/^./, '0')}`
		]);
		expect(await attempt('b', sha, other, '1.3.0')).toEqual([
			1,
			"flotilla-slot: bad signature: the image's sha256 is signed by none of the release keys in /etc/flotilla/release-keys"
		]);
		expect(await attempt('a', sha, good, '1.3.0')).toEqual([
			1,
			'flotilla-slot: slot a is booted now: only the standby slot is verified'
		]);
		expect(await attempt('b', sha, good, '1.3.0')).toEqual([0, 'slot b verified: version 1.3.0']);
		expect(await flotillaSlot(['set-next', 'b'], io().io, model)).toBe(0);
	});

	it('compares versions as the helper does', () => {
		expect(versionBelow('1.2.3', '1.10.0')).toBe(true);
		expect(versionBelow('1.2.3-rc.1', '1.2.3')).toBe(true);
		expect(versionBelow('1.2.3', '1.2.3-rc.1')).toBe(false);
		expect(versionBelow('1.2.3-beta', '1.2.3-alpha')).toBe(false);
		expect(versionBelow('1.2.3+b2', '1.2.3+b1')).toBe(false);
	});
});
