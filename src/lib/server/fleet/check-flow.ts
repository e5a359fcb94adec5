import { eq } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { nodes } from '$lib/server/db/schema';
import type { Flow } from '$lib/server/engine/flows';
import { sh } from '$lib/server/ssh/shell';

/**
 * "Check nodes" as a run: reaches every chosen node over SSH through the engine (so it shows progress, logs
 * and per-node outcomes like any other run) and records what it found on the node rows. Read-only on the
 * nodes, so nothing to undo.
 */
export const checkFlow: Flow = {
	kind: 'check',
	readOnly: true,
	steps: [
		{
			name: 'connect',
			deadlineMs: 15_000,
			retry: { attempts: 2, delayMs: 1_000 },
			async do(ctx) {
				const started = performance.now();
				await ctx.exec(sh`true`);
				ctx.memo.latencyMs = Math.round(performance.now() - started);
			}
		},
		{
			name: 'facts',
			deadlineMs: 15_000,
			retry: { attempts: 2, delayMs: 1_000 },
			async do(ctx) {
				const uname = (await ctx.exec(sh`uname -a`)).stdout.trim();
				await db()
					.update(nodes)
					.set({
						reachable: true,
						uname,
						latencyMs: Number(ctx.memo.latencyMs) || null,
						lastSeenAt: new Date(),
						lastCheckAt: new Date(),
						lastError: null
					})
					.where(eq(nodes.id, ctx.node.id));
			}
		}
	]
};
