/**
 * What an update applies on a node, and whether it reboots (docs/system-updates.md, "Policies"): pure, so the
 * whole policy matrix is tested without a node.
 *
 * - `full`: every pending package; a reboot a package asks for happens at once.
 * - `security`: the security updates only; the reboot waits for the node's maintenance window.
 * - `manual`: nothing, unless an operator forces it (`force_full`, which applies as `full` does) or names packages.
 */
export type Policy = 'full' | 'security' | 'manual';
export type RebootChoice = 'now' | 'window' | 'never';

export interface Pending {
	name: string;
	security: boolean;
}

export interface Decision {
	/** The packages to install, by name, in name order. */
	packages: string[];
	/** Left out and why: held on the node (`apt-mark hold`) or by a hold pattern of its node or role. */
	held: { name: string; by: string }[];
	/** What happens with a reboot that is (or becomes) required. */
	reboot: RebootChoice;
	/** Why nothing is applied, when nothing is. */
	reason: string | null;
}

export interface DecisionInput {
	policy: Policy;
	forceFull: boolean;
	/** Packages an operator named; only those of them that are pending are applied. */
	packages?: string[];
	pending: Pending[];
	/** `apt-mark showhold` on the node. */
	aptHeld: string[];
	/** Hold patterns of the node and its roles (shell-style * and ?), with where each comes from. */
	holdPatterns: { pattern: string; by: string }[];
	/** Overrides the policy's reboot choice. */
	reboot?: RebootChoice;
}

/** A hold pattern as a regular expression: `*` any run of characters, `?` one; everything else literal. */
export function holdMatcher(pattern: string): RegExp {
	const body = pattern
		.replace(/[.+^${}()|[\]\\]/g, '\\$&')
		.replaceAll('*', '.*')
		.replaceAll('?', '.');
	return new RegExp(`^${body}$`);
}

export function decide(input: DecisionInput): Decision {
	const effective: Policy = input.forceFull ? 'full' : input.policy;
	const reboot = input.reboot ?? (effective === 'full' ? 'now' : effective === 'security' ? 'window' : 'never');
	const named = input.packages ? new Set(input.packages) : null;
	if (!named && effective === 'manual') {
		return { packages: [], held: [], reboot, reason: 'policy manual: nothing is applied unless an operator forces it' };
	}
	const wanted = input.pending.filter((p) => (named ? named.has(p.name) : effective === 'full' || p.security));
	const matchers = input.holdPatterns.map((h) => ({ ...h, re: holdMatcher(h.pattern) }));
	const held: Decision['held'] = [];
	const packages: string[] = [];
	for (const p of wanted) {
		if (input.aptHeld.includes(p.name)) {
			held.push({ name: p.name, by: 'apt-mark hold on the node' });
			continue;
		}
		// A package an operator names explicitly is theirs to apply: hold patterns stop only automatic choices.
		const pattern = named ? undefined : matchers.find((m) => m.re.test(p.name));
		if (pattern) {
			held.push({ name: p.name, by: `hold ${pattern.pattern} (${pattern.by})` });
			continue;
		}
		packages.push(p.name);
	}
	packages.sort();
	const reason = packages.length
		? null
		: wanted.length
			? 'every package this update would apply is held'
			: effective === 'security' && !named
				? 'no security update is pending'
				: 'nothing is pending';
	return { packages: [...new Set(packages)], held, reboot, reason };
}

/** Whether the node reboots at the end of the update, given what is required and where the window stands. */
export function rebootsNow(choice: RebootChoice, rebootRequired: boolean, insideWindow: boolean): boolean {
	if (!rebootRequired) return false;
	return choice === 'now' || (choice === 'window' && insideWindow);
}

export interface Soak {
	/** Versions the fleet has known for fewer days are not applied automatically (0: no gate). */
	days: number;
	/** Security updates pass the gate at once. */
	securityExempt: boolean;
}

/**
 * The soak gate, for automatic updates only: a candidate version is applied once the fleet has known it (any
 * node's scan first offered it) for `days`, so a bad package has time to be noticed and pulled before it is
 * everywhere. Security updates are exempt unless configured otherwise. The gated packages move to `held`.
 */
export function applySoak(
	decision: Decision,
	pending: (Pending & { arch: string; candidate: string })[],
	firstSeen: (p: { name: string; arch: string; candidate: string }) => Date | null,
	now: Date,
	soak: Soak
): Decision {
	if (soak.days <= 0) return decision;
	const byName = new Map(pending.map((p) => [p.name, p]));
	const packages: string[] = [];
	const held = [...decision.held];
	for (const name of decision.packages) {
		const p = byName.get(name)!;
		const seen = firstSeen(p);
		const age = seen ? (now.getTime() - seen.getTime()) / 86_400_000 : 0;
		if ((p.security && soak.securityExempt) || age >= soak.days) packages.push(name);
		else
			held.push({
				name,
				by: `soaking: the fleet has known ${p.candidate} for ${Math.floor(age)} of ${soak.days} days`
			});
	}
	const reason = packages.length
		? decision.reason
		: decision.packages.length
			? 'every pending version is still soaking'
			: decision.reason;
	return { ...decision, packages, held, reason };
}

/** Where a node's policy comes from: its own, a role's default, or the fallback (no role has one). */
export interface EffectivePolicy {
	policy: Policy;
	from: 'node' | 'role' | 'fallback';
	/** The role whose default applies, when `from` is `role`. */
	role: string | null;
}

/** Most conservative first: a role that wants an operator's hand is not overruled by one that wants everything. */
const CAUTION: Policy[] = ['manual', 'security', 'full'];

/**
 * A node's policy (docs/system-updates.md, "Policies"): its own when set; otherwise its roles' defaults, the most
 * conservative winning when they disagree (manual > security > full); `security` when neither says.
 */
export function effectivePolicy(
	own: Policy | null,
	roleDefaults: { role: string; policy: Policy | null }[]
): EffectivePolicy {
	if (own) return { policy: own, from: 'node', role: null };
	for (const policy of CAUTION) {
		const role = roleDefaults.find((r) => r.policy === policy);
		if (role) return { policy, from: 'role', role: role.role };
	}
	return { policy: 'security', from: 'fallback', role: null };
}
