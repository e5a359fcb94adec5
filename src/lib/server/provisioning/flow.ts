import { and, eq, inArray, ne } from 'drizzle-orm';
import { z } from 'zod';
import { roleNameSchema } from '$lib/schemas/nodes';
import { provisioningPhases, type ProvisioningPhase } from '$lib/schemas/provisioning';
import { commitSchema } from '$lib/schemas/remote';
import { anyExit, waitHealthy } from '$lib/server/codesync/health';
import { recordSynced } from '$lib/server/codesync/versions';
import { db } from '$lib/server/db';
import { codeRoles, nodeProvisioning, nodes, roleProvisioning, type CodeRole } from '$lib/server/db/schema';
import { StepFailed, type Flow, type Step, type StepContext } from '$lib/server/engine';
import { envFileOf, findDefinition, serviceUserOf } from './definitions';
import { cleanRole, deployRole, installPackages, installServices, writeSecrets } from './phases';

/**
 * Provisioning one node for a role (docs/provisioning.md): six phases, each a step, each idempotent. A phase
 * the run does not name is passed over; a failed phase ends the task with its reason, and the next run picks
 * up where it stopped because every phase first looks at what is already there.
 */

export const provisionParams = z.object({
	role: roleNameSchema,
	phases: z.array(z.enum(provisioningPhases)),
	/** Pinned when the run was planned, so a notification during the run cannot move it; null without deploy. */
	commit: commitSchema.nullable()
});
export type ProvisionParams = z.infer<typeof provisionParams>;
type Ctx = StepContext<ProvisionParams>;

/** What a task learned on the way, kept in its memo. */
interface Progress {
	head?: string;
	previous?: string | null;
	/** Something the services run on changed in this run: they restart instead of only starting. */
	restart?: boolean;
}

const progress = (ctx: Ctx) => ctx.memo as Progress;

async function roleOf(name: string): Promise<CodeRole> {
	const [role] = await db().select().from(codeRoles).where(eq(codeRoles.name, name));
	// The role was checked when the run was planned; deleting it since is the one way to land here.
	if (!role) throw new Error(`the role ${name} no longer exists`);
	return role;
}

function phase(name: ProvisioningPhase, deadlineMs: number, run: (ctx: Ctx) => Promise<void>): Step<ProvisionParams> {
	return {
		name,
		deadlineMs,
		async do(ctx) {
			if (!ctx.params.phases.includes(name)) {
				ctx.log(`${name}: not in this run`);
				return;
			}
			await run(ctx);
		}
	};
}

/** The roles another provisioning (or the inventory) put on the node, which a clean removes. */
async function previousRoles(ctx: Ctx): Promise<string[]> {
	const recorded = await db()
		.select({ role: nodeProvisioning.role })
		.from(nodeProvisioning)
		.where(and(eq(nodeProvisioning.nodeId, ctx.node.id), ne(nodeProvisioning.role, ctx.params.role)));
	return [...new Set([...ctx.node.roles, ...recorded.map((r) => r.role)])].filter((r) => r !== ctx.params.role);
}

const steps: Step<ProvisionParams>[] = [
	phase('clean', 300_000, async (ctx) => {
		const others = await previousRoles(ctx);
		const def = await findDefinition(ctx.params.role);
		const target = await roleOf(ctx.params.role);
		// What the role being provisioned uses is never another role's to remove, even where they share it.
		const keep = {
			user: serviceUserOf({ role: ctx.params.role, serviceUser: def?.serviceUser ?? null }),
			paths: [target.path, envFileOf(target.name).dir],
			units: def?.unitTemplates.map((u) => u.name) ?? []
		};
		const roles = others.length ? await db().select().from(codeRoles).where(inArray(codeRoles.name, others)) : [];
		const defs = others.length
			? await db().select().from(roleProvisioning).where(inArray(roleProvisioning.role, others))
			: [];
		let changed = false;
		for (const role of roles) {
			const removed = await cleanRole(ctx, role, defs.find((d) => d.role === role.name) ?? null, keep);
			changed ||= removed;
		}
		if (others.length) {
			await db()
				.delete(nodeProvisioning)
				.where(and(eq(nodeProvisioning.nodeId, ctx.node.id), inArray(nodeProvisioning.role, others)));
		}
		ctx.log(changed ? `cleaned what ${others.join(', ')} left` : 'clean: nothing left by another role');
	}),
	phase('deploy', 600_000, async (ctx) => {
		const role = await roleOf(ctx.params.role);
		if (!ctx.params.commit) throw new StepFailed(`${role.name} has no known commit to deploy`);
		const result = await deployRole(ctx, role, await findDefinition(role.name), ctx.params.commit);
		const p = progress(ctx);
		p.head = result.head;
		p.previous ??= result.previous;
		p.restart = p.restart || result.changed;
	}),
	phase('system_deps', 900_000, async (ctx) => {
		const [done] = await db()
			.select({ at: nodeProvisioning.depsInstalledAt })
			.from(nodeProvisioning)
			.where(and(eq(nodeProvisioning.nodeId, ctx.node.id), eq(nodeProvisioning.role, ctx.params.role)));
		if (done?.at) {
			ctx.log(`system dependencies were installed at the first provisioning (${done.at.toISOString()})`);
			return;
		}
		await installPackages(ctx, await findDefinition(ctx.params.role));
		await recordNodeState(ctx, { depsInstalledAt: new Date() });
	}),
	phase('secrets', 120_000, async (ctx) => {
		const def = await findDefinition(ctx.params.role);
		if (!def) return ctx.log('the role defines no secrets or service account');
		// Written whatever happened before: `||=` would skip the call once a restart is already due.
		const changed = await writeSecrets(ctx, await roleOf(ctx.params.role), def);
		progress(ctx).restart ||= changed;
	}),
	phase('services', 900_000, async (ctx) => {
		const role = await roleOf(ctx.params.role);
		const def = await findDefinition(role.name);
		if (def?.unitTemplates.length)
			await installServices(ctx, role, def, { restart: progress(ctx).restart ?? false, start: true });
		else ctx.log('the role defines no unit templates');
		await waitHealthy(anyExit(ctx), role, ctx.signal, ctx.log);
	}),
	phase('verify', 660_000, async (ctx) => {
		const role = await roleOf(ctx.params.role);
		await waitHealthy(anyExit(ctx), role, ctx.signal, ctx.log);
		const p = progress(ctx);
		if (p.head)
			await recordSynced(ctx.node.id, role.name, p.head, p.previous && p.previous !== p.head ? p.previous : null);
		await recordNodeState(ctx, { provisionedAt: new Date(), lastError: null });
		// A clean run leaves the node with this role alone; otherwise the role joins the ones it had.
		const roles = ctx.params.phases.includes('clean') ? [role.name] : [...new Set([...ctx.node.roles, role.name])];
		await db()
			.update(nodes)
			.set({ roles, reachable: true, lastSeenAt: new Date(), lastError: null, updatedAt: new Date() })
			.where(eq(nodes.id, ctx.node.id));
	})
];

async function recordNodeState(
	ctx: { node: { id: string }; task: { runId: string }; params: ProvisionParams },
	set: Partial<typeof nodeProvisioning.$inferInsert>
): Promise<void> {
	await db()
		.insert(nodeProvisioning)
		.values({ nodeId: ctx.node.id, role: ctx.params.role, lastRunId: ctx.task.runId, ...set })
		.onConflictDoUpdate({
			target: [nodeProvisioning.nodeId, nodeProvisioning.role],
			set: { lastRunId: ctx.task.runId, updatedAt: new Date(), ...set }
		});
}

export const provisionFlow: Flow<ProvisionParams> = {
	kind: 'provision',
	title: 'Provision',
	parseParams: (p) => provisionParams.parse(p),
	steps,
	// Every phase looks before it acts: after a crash the task simply runs again.
	async inspect() {
		return 'restart';
	},
	async finished(end) {
		if (end.state !== 'failed' && end.state !== 'rolled_back') return;
		await recordNodeState(
			{ node: end.node, task: end.task, params: end.params },
			{ lastError: (end.error ?? 'provisioning failed').slice(0, 2000) }
		);
	}
};
