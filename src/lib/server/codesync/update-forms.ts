import { fail, redirect, type RequestEvent } from '@sveltejs/kit';
import { PLAN_ROWS, type PlanView } from '$lib/code-sync';
import { triggerSchema, updateScopeSchema, type UpdateScope } from '$lib/schemas/code-sync';
import { describeFieldErrors, fieldErrors } from '$lib/schemas/errors';
import { actorOf } from '$lib/server/audit';
import { buildPlan, planTitle, triggerUpdate, type Plan } from './plan';
import { ServiceError } from '$lib/server/errors';
import { formError, readFormData } from '$lib/server/http/forms';
import { entryProblems, inputProblems } from '$lib/server/http/input';

/**
 * The two form actions behind every "Update …" button: `plan` shows the dry run, `update` starts what the
 * operator confirmed. The confirmation carries the plan's target commits (`expect`), so a role that moved
 * in between is refused instead of deploying a commit nobody reviewed.
 */

export function planView(plan: Plan): PlanView {
	const roles = new Map<string, number>();
	for (const n of plan.nodes) for (const r of n.roles) roles.set(r.role, (roles.get(r.role) ?? 0) + 1);
	const excluded = plan.excluded.filter((e) => e.reason !== 'up to date');
	const warnings: string[] = [];
	const unknown = new Map(plan.unknown_targets.map((u) => [u.role, u.reason]));
	for (const u of plan.unknown_targets) {
		warnings.push(
			`${u.role}: commit ${u.commit.slice(0, 12)} is unknown (${u.reason}); its update will fail on every node. Pin the role to a known commit on the Code Sync page.`
		);
	}
	const flagged = plan.nodes.filter((n) => n.warning);
	for (const n of flagged.slice(0, 10)) warnings.push(`${n.name}: ${n.warning}`);
	if (flagged.length > 10) warnings.push(`…and ${flagged.length - 10} more nodes with warnings`);
	if (excluded.length) {
		warnings.push(`${excluded.length} node${excluded.length === 1 ? ' is' : 's are'} behind but left out (see below)`);
	}
	if (!plan.nodes.length) warnings.push(nothingToUpdate(excluded.length));
	return {
		title: planTitle(plan),
		scope: plan.scope,
		targets: plan.targets,
		roles: Object.entries(plan.targets).map(([role, to]) => ({
			role,
			to,
			nodes: roles.get(role) ?? 0,
			signed: plan.signatures_required.includes(role),
			unknown: unknown.get(role) ?? null
		})),
		phases: plan.phases,
		concurrency: plan.concurrency,
		nodes: plan.nodes.slice(0, PLAN_ROWS),
		nodesTotal: plan.nodes.length,
		excluded: excluded.slice(0, PLAN_ROWS),
		excludedTotal: excluded.length,
		upToDate: plan.excluded.length - excluded.length,
		warnings
	};
}

/** Why a plan has no node to update: nothing is behind, or what is behind cannot be updated now. */
function nothingToUpdate(behindButLeftOut: number): string {
	return behindButLeftOut
		? 'Nothing can be updated now: every node that is behind is left out (see below).'
		: 'Nothing to update: every node in scope runs its roles’ latest commits.';
}

function jsonField(form: FormData, key: string): unknown {
	const raw = form.get(key);
	if (typeof raw !== 'string' || raw === '') return undefined;
	try {
		const value: unknown = JSON.parse(raw);
		// A field that holds JSON is held to what any JSON body is (no NUL, no prototype keys).
		const problems = inputProblems(value);
		return Object.keys(problems).length ? new BadField(problems, key) : value;
	} catch {
		return raw; // the schema names the field and says what it expected
	}
}

class BadField {
	constructor(
		readonly problems: Record<string, string>,
		readonly key: string
	) {}
	/** The problems, named from the form field that held the JSON (`expect.constructor`). */
	get fields(): Record<string, string> {
		return Object.fromEntries(Object.entries(this.problems).map(([k, v]) => [k ? `${this.key}.${k}` : this.key, v]));
	}
}

/** The first problem among a form's text values and its JSON fields, as a 400 naming the fields. */
function formProblems(form: FormData, ...values: unknown[]) {
	const fields = entryProblems(form.entries());
	for (const v of values) if (v instanceof BadField) Object.assign(fields, v.fields);
	return Object.keys(fields).length ? badForm(fields) : null;
}

function badForm(fields: Record<string, string>) {
	return fail(400, { message: describeFieldErrors(fields), fields, values: {} as Record<string, string> });
}

/** `?/plan`: the dry run for the scope the button names (`scope`, JSON), shown in the confirm dialog. */
export async function planAction(event: RequestEvent, fixedScope?: UpdateScope) {
	const read = await readFormData(event.request);
	if (!read.ok) return read.failure;
	const form = read.form;
	const scopeField = jsonField(form, 'scope');
	const bad = formProblems(form, scopeField);
	if (bad) return bad;
	const scope = fixedScope
		? { success: true as const, data: fixedScope }
		: updateScopeSchema.safeParse(scopeField ?? {});
	if (!scope.success) return badForm(fieldErrors(scope.error));
	try {
		return { plan: planView(await buildPlan(scope.data)) };
	} catch (err) {
		return formError(err);
	}
}

/**
 * `?/update`: starts the confirmed plan and goes to its run. Refused without the plan's commits: a form
 * posted without having seen a plan must not start an update of the fleet.
 */
export async function updateAction(event: RequestEvent, fixedScope?: UpdateScope) {
	const read = await readFormData(event.request);
	if (!read.ok) return read.failure;
	const form = read.form;
	const expect = jsonField(form, 'expect');
	const scopeField = jsonField(form, 'scope');
	const bad = formProblems(form, expect, scopeField);
	if (bad) return bad;
	if (expect === undefined) {
		return badForm({ expect: 'review the plan first: the update starts from the plan you confirm' });
	}
	const parsed = triggerSchema.safeParse({
		scope: fixedScope ?? scopeField ?? {},
		expect,
		dry_run: false,
		concurrency: (form.get('concurrency') as string | null) || undefined,
		max_failures: (form.get('max_failures') as string | null) || undefined,
		max_failure_percent: (form.get('max_failure_percent') as string | null) || undefined,
		stop_on_first_failure: form.get('stop_on_first_failure') === 'on'
	});
	if (!parsed.success) return badForm(fieldErrors(parsed.error));
	let runId: string | null;
	try {
		({ runId } = await triggerUpdate(actorOf(event), parsed.data));
	} catch (err) {
		if (!(err instanceof ServiceError)) throw err;
		// Refused (a role moved, another run covers the nodes, nothing left to do): show the plan as it is now,
		// with the reason, so the operator can review and confirm again.
		const fresh = await buildPlan(parsed.data.scope ?? {}, parsed.data.concurrency).catch(() => null);
		return fail(err.status, {
			message: err.message,
			fields: err.fields,
			values: {} as Record<string, string>,
			plan: fresh ? planView(fresh) : undefined
		});
	}
	redirect(303, `/runs/${runId}`);
}
