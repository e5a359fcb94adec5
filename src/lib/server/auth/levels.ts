import type { Role, Scope } from '$lib/server/db/schema';

/**
 * One ladder for people and tokens. A role and a token scope of the same rung grant the same:
 * viewer ≈ read, operator ≈ operate, admin ≈ admin. Each rung includes those below it.
 */
export type Level = Scope;

const rank: Record<Level, number> = { read: 1, operate: 2, admin: 3 };

export const roleLevel: Record<Role, Level> = { viewer: 'read', operator: 'operate', admin: 'admin' };

export function levelAtLeast(have: Level, need: Level): boolean {
	return rank[have] >= rank[need];
}

export function highestLevel(levels: readonly Level[]): Level | undefined {
	return [...levels].sort((a, b) => rank[b] - rank[a])[0];
}

/** The lower of two levels: a token never grants more than its owner's current role. */
export function lowerLevel(a: Level, b: Level): Level {
	return rank[a] <= rank[b] ? a : b;
}
