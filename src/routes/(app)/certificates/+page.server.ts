import { fail, redirect } from '@sveltejs/kit';
import { z } from 'zod';
import { iso } from '$lib/format';
import { createCaSchema, rotateSchema } from '$lib/schemas/certificates';
import { describeFieldErrors } from '$lib/schemas/errors';
import { actorOf } from '$lib/server/audit';
import { authorize } from '$lib/server/auth/access';
import { createInternalCa, listAuthorities } from '$lib/server/certs/authority';
import { listInventory } from '$lib/server/certs/inventory';
import { planRotation, startRotation, type RotationPlan } from '$lib/server/certs/plan';
import { listCertRoles } from '$lib/server/certs/roles';
import { startScan } from '$lib/server/certs/scan';
import { expiryTimeline } from '$lib/server/certs/timeline';
import { config } from '$lib/server/config';
import { ServiceError } from '$lib/server/errors';
import { principalOf } from '$lib/server/http/api';
import { formError, parseForm } from '$lib/server/http/forms';
import type { Actions, PageServerLoad } from './$types';

export const load: PageServerLoad = async (event) => {
	event.depends('app:certificates');
	const [items, authorities, roles] = await Promise.all([listInventory(), listAuthorities(), listCertRoles()]);
	const principal = principalOf(event);
	return {
		items: items.map((i) => ({
			...i,
			not_before: iso(i.not_before),
			not_after: iso(i.not_after),
			checked_at: i.checked_at.toISOString()
		})),
		timeline: expiryTimeline(
			items.flatMap((i) => (i.not_after ? [i.not_after] : [])),
			new Date()
		),
		thresholds: config().certThresholds,
		authorities: authorities.map((a) => ({
			id: a.id,
			name: a.name,
			fingerprint: a.fingerprint,
			issuing: a.issuing,
			notAfter: a.notAfter.toISOString()
		})),
		roles: roles.map((r) => r.role),
		canOperate: authorize(event.route.id, 'POST', '?/rotate', principal).allow,
		canAdmin: authorize(event.route.id, 'POST', '?/createCa', principal).allow
	};
};

/** The rotation form as the JSON endpoint's body: `nodes` (repeated) or `expiring_within_days`. */
const rotationShape = (form: FormData) => {
	// A node's rows (its file and its endpoints) are selected together: each is named once.
	const nodes = [...new Set(form.getAll('nodes').filter((v): v is string => typeof v === 'string' && v !== ''))];
	const within = form.get('expiring_within_days');
	return {
		...(nodes.length ? { nodes } : {}),
		...(typeof within === 'string' && within !== '' ? { expiring_within_days: within } : {}),
		dry_run: form.get('confirm') !== 'yes'
	};
};

const presentPlan = (plan: RotationPlan, scope: { nodes?: string[]; expiring_within_days?: number }) => ({
	...plan,
	nodes: plan.nodes.slice(0, 200),
	nodesTotal: plan.nodes.length,
	scope
});

export const actions: Actions = {
	scan: async (event) => {
		const parsed = await parseForm(event.request, z.object({ nodes: z.array(z.string()).optional() }).strict(), (f) => {
			const nodes = f.getAll('nodes').filter((v): v is string => typeof v === 'string' && v !== '');
			return nodes.length ? { nodes } : {};
		});
		if (!parsed.ok) return parsed.failure;
		try {
			const { runId } = await startScan(actorOf(event), parsed.data);
			redirect(303, `/runs/${runId}`);
		} catch (err) {
			return formError(err);
		}
	},

	/** The plan of a rotation, shown for confirmation before anything happens. */
	plan: async (event) => {
		const parsed = await parseForm(event.request, rotateSchema, rotationShape);
		if (!parsed.ok) return parsed.failure;
		try {
			const { nodes, expiring_within_days } = parsed.data;
			return { plan: presentPlan(await planRotation(parsed.data), { nodes, expiring_within_days }) };
		} catch (err) {
			return formError(err);
		}
	},

	/** Starts the confirmed rotation and goes to its run, where its progress is live. */
	rotate: async (event) => {
		const parsed = await parseForm(event.request, rotateSchema, rotationShape);
		if (!parsed.ok) return parsed.failure;
		if (parsed.data.dry_run) {
			const fields = { confirm: 'review the plan and confirm it first' };
			return fail(400, { message: describeFieldErrors(fields), fields, values: {} as Record<string, string> });
		}
		let runId: string | null;
		try {
			({ runId } = await startRotation(actorOf(event), parsed.data));
		} catch (err) {
			if (!(err instanceof ServiceError)) throw err;
			return formError(err);
		}
		redirect(303, `/runs/${runId}`);
	},

	createCa: async (event) => {
		const parsed = await parseForm(event.request, createCaSchema);
		if (!parsed.ok) return parsed.failure;
		try {
			const ca = await createInternalCa(actorOf(event), parsed.data);
			return { notice: `Created the internal CA ${ca.name}; its key is sealed in the database.` };
		} catch (err) {
			return formError(err, parsed.form);
		}
	}
};
