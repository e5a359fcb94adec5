import { describe, expect, it } from 'vitest';
import { applySoak, decide, effectivePolicy, holdMatcher, rebootsNow, type Pending, type Policy } from './policy';
import { rebootPhases } from './reboots';

const SECURITY_ONLY: Pending[] = [
	{ name: 'libc6', security: true },
	{ name: 'openssl', security: true }
];
const MIXED: Pending[] = [...SECURITY_ONLY, { name: 'curl', security: false }];
const NONE: Pending[] = [];

/**
 * The whole matrix: each policy × (security only, mixed, none pending) × reboot required or not → what is
 * applied, and whether the node reboots now, in its window, or not at all.
 */
describe('policy matrix', () => {
	const cases: [Policy, string, Pending[], string[], 'now' | 'window' | 'never'][] = [
		['full', 'security only', SECURITY_ONLY, ['libc6', 'openssl'], 'now'],
		['full', 'mixed', MIXED, ['curl', 'libc6', 'openssl'], 'now'],
		['full', 'none', NONE, [], 'now'],
		['security', 'security only', SECURITY_ONLY, ['libc6', 'openssl'], 'window'],
		['security', 'mixed', MIXED, ['libc6', 'openssl'], 'window'],
		['security', 'none', NONE, [], 'window'],
		['manual', 'security only', SECURITY_ONLY, [], 'never'],
		['manual', 'mixed', MIXED, [], 'never'],
		['manual', 'none', NONE, [], 'never']
	];
	for (const [policy, label, pending, applied, reboot] of cases) {
		for (const required of [true, false]) {
			it(`${policy} × ${label} × reboot ${required ? 'required' : 'not required'}`, () => {
				const d = decide({ policy, forceFull: false, pending, aptHeld: [], holdPatterns: [] });
				expect(d.packages).toEqual(applied);
				expect(d.reboot).toBe(reboot);
				// Outside the window: only `now` reboots; inside it, `window` does too; never without a requirement.
				expect(rebootsNow(d.reboot, required, false)).toBe(required && reboot === 'now');
				expect(rebootsNow(d.reboot, required, true)).toBe(required && reboot !== 'never');
			});
		}
	}

	it('force_full applies everything as full does, whatever the policy', () => {
		for (const policy of ['full', 'security', 'manual'] as const) {
			const d = decide({ policy, forceFull: true, pending: MIXED, aptHeld: [], holdPatterns: [] });
			expect(d).toMatchObject({ packages: ['curl', 'libc6', 'openssl'], reboot: 'now', reason: null });
		}
	});

	it('says why nothing is applied', () => {
		expect(decide({ policy: 'manual', forceFull: false, pending: MIXED, aptHeld: [], holdPatterns: [] }).reason).toBe(
			'policy manual: nothing is applied unless an operator forces it'
		);
		expect(
			decide({
				policy: 'security',
				forceFull: false,
				pending: [{ name: 'curl', security: false }],
				aptHeld: [],
				holdPatterns: []
			}).reason
		).toBe('no security update is pending');
	});
});

describe('holds', () => {
	it('apt-mark holds and hold patterns keep packages out, saying by what', () => {
		const d = decide({
			policy: 'full',
			forceFull: false,
			pending: [...MIXED, { name: 'linux-image-amd64', security: true }],
			aptHeld: ['curl'],
			holdPatterns: [{ pattern: 'linux-image-*', by: 'role db' }]
		});
		expect(d.packages).toEqual(['libc6', 'openssl']);
		expect(d.held).toEqual([
			{ name: 'curl', by: 'apt-mark hold on the node' },
			{ name: 'linux-image-amd64', by: 'hold linux-image-* (role db)' }
		]);
	});

	it('an operator naming a package passes hold patterns, never an apt-mark hold', () => {
		const d = decide({
			policy: 'manual',
			forceFull: false,
			packages: ['linux-image-amd64', 'curl'],
			pending: [...MIXED, { name: 'linux-image-amd64', security: true }],
			aptHeld: ['curl'],
			holdPatterns: [{ pattern: 'linux-image-*', by: 'role db' }]
		});
		expect(d.packages).toEqual(['linux-image-amd64']);
	});

	it('patterns: * and ? only, everything else literal', () => {
		expect(holdMatcher('linux-image-*').test('linux-image-6.1.0-29-amd64')).toBe(true);
		expect(holdMatcher('postgresql-1?').test('postgresql-15')).toBe(true);
		expect(holdMatcher('postgresql-1?').test('postgresql-150')).toBe(false);
		expect(holdMatcher('g++').test('g++')).toBe(true);
		expect(holdMatcher('g++').test('gg')).toBe(false);
		expect(holdMatcher('lib.c').test('libxc')).toBe(false);
	});
});

describe('reboot phases', () => {
	const sizes = new Map([
		['db', 3],
		['web', 4]
	]);
	it('one node per role per phase, control-plane nodes last and one at a time', () => {
		const phases = rebootPhases(
			[
				{ id: 'cp1', roles: ['db'], controlPlane: true },
				{ id: 'db1', roles: ['db'], controlPlane: false },
				{ id: 'web1', roles: ['web'], controlPlane: false },
				{ id: 'db2', roles: ['db', 'web'], controlPlane: false },
				{ id: 'web2', roles: ['web'], controlPlane: false },
				{ id: 'cp2', roles: ['web'], controlPlane: true }
			],
			0,
			sizes
		);
		expect(Object.fromEntries(phases)).toEqual({ db1: 0, web1: 0, db2: 1, web2: 2, cp1: 3, cp2: 4 });
	});

	it('a share lets more of a big role down at once, never less than one', () => {
		const list = ['w1', 'w2', 'w3', 'w4'].map((id) => ({ id, roles: ['web'], controlPlane: false }));
		expect(Object.fromEntries(rebootPhases(list, 0.5, sizes))).toEqual({ w1: 0, w2: 0, w3: 1, w4: 1 });
		expect(Object.fromEntries(rebootPhases(list, 0.1, sizes))).toEqual({ w1: 0, w2: 1, w3: 2, w4: 3 });
	});
});

describe('soak gate', () => {
	const now = new Date('2026-03-20T00:00:00Z');
	const pending = [
		{ name: 'curl', arch: 'amd64', candidate: '2', security: false },
		{ name: 'openssl', arch: 'amd64', candidate: '3', security: true },
		{ name: 'tzdata', arch: 'all', candidate: '4', security: false }
	];
	const seen: Record<string, Date> = {
		curl: new Date('2026-03-18T00:00:00Z'),
		openssl: new Date('2026-03-19T00:00:00Z'),
		tzdata: new Date('2026-03-10T00:00:00Z')
	};
	const decision = decide({ policy: 'full', forceFull: false, pending, aptHeld: [], holdPatterns: [] });

	it('takes only versions the fleet has known long enough; security updates at once unless gated too', () => {
		const gated = applySoak(decision, pending, (p) => seen[p.name] ?? null, now, { days: 7, securityExempt: true });
		expect(gated.packages).toEqual(['openssl', 'tzdata']);
		expect(gated.held).toEqual([{ name: 'curl', by: 'soaking: the fleet has known 2 for 2 of 7 days' }]);
		const strict = applySoak(decision, pending, (p) => seen[p.name] ?? null, now, { days: 7, securityExempt: false });
		expect(strict.packages).toEqual(['tzdata']);
	});

	it('a version never seen by a scan is not applied; no gate applies everything', () => {
		expect(applySoak(decision, pending, () => null, now, { days: 1, securityExempt: false })).toMatchObject({
			packages: [],
			reason: 'every pending version is still soaking'
		});
		expect(applySoak(decision, pending, () => null, now, { days: 0, securityExempt: false })).toBe(decision);
	});
});

describe('effectivePolicy', () => {
	const roles = (...p: [string, Policy | null][]) => p.map(([role, policy]) => ({ role, policy }));
	it("takes the node's own policy over any role default", () => {
		expect(effectivePolicy('full', roles(['db', 'manual']))).toEqual({ policy: 'full', from: 'node', role: null });
	});
	it("takes its role's default when it has none", () => {
		expect(effectivePolicy(null, roles(['web', 'full']))).toEqual({ policy: 'full', from: 'role', role: 'web' });
	});
	it('lets the most conservative default win when roles disagree: manual > security > full', () => {
		expect(effectivePolicy(null, roles(['web', 'full'], ['db', 'manual'], ['cache', 'security']))).toEqual({
			policy: 'manual',
			from: 'role',
			role: 'db'
		});
		expect(effectivePolicy(null, roles(['web', 'full'], ['cache', 'security'], ['misc', null]))).toEqual({
			policy: 'security',
			from: 'role',
			role: 'cache'
		});
	});
	it('falls back to security when neither the node nor a role says', () => {
		expect(effectivePolicy(null, roles(['web', null]))).toEqual({ policy: 'security', from: 'fallback', role: null });
		expect(effectivePolicy(null, [])).toEqual({ policy: 'security', from: 'fallback', role: null });
	});
});
