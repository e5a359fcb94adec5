import { inArray, isNotNull, and } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { codeRoles, type Node } from '$lib/server/db/schema';
import { effectivePolicy, type EffectivePolicy } from './policy';

/** Each node's effective policy, by node id, with the role defaults read once for all of them. */
export async function policiesOf(list: Pick<Node, 'id' | 'policy' | 'roles'>[]): Promise<Map<string, EffectivePolicy>> {
	const names = [...new Set(list.filter((n) => !n.policy).flatMap((n) => n.roles))];
	const rows = names.length
		? await db()
				.select({ name: codeRoles.name, policy: codeRoles.updatePolicy })
				.from(codeRoles)
				.where(and(inArray(codeRoles.name, names), isNotNull(codeRoles.updatePolicy)))
		: [];
	const byRole = new Map(rows.map((r) => [r.name, r.policy]));
	return new Map(
		list.map((n) => [
			n.id,
			effectivePolicy(
				n.policy,
				n.roles.map((role) => ({ role, policy: byRole.get(role) ?? null }))
			)
		])
	);
}

/** One node's effective policy. */
export async function policyOf(node: Pick<Node, 'id' | 'policy' | 'roles'>): Promise<EffectivePolicy> {
	return (await policiesOf([node])).get(node.id)!;
}
