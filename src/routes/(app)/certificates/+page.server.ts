import { fail, redirect } from '@sveltejs/kit';
import { z } from 'zod';
import { iso } from '$lib/format';
import {
	certRoleSchema,
	createCaSchema,
	importCaSchema,
	revokeSchema,
	rotateSchema,
	trustCaSchema
} from '$lib/schemas/certificates';
import { describeFieldErrors } from '$lib/schemas/errors';
import { actorOf } from '$lib/server/audit';
import { authorize } from '$lib/server/auth/access';
import { createInternalCa, importInternalCa, listAuthorities, trustAuthority } from '$lib/server/certs/authority';
import { listIssued, presentIssued, revokeIssued } from '$lib/server/certs/issued';
import { listInventory } from '$lib/server/certs/inventory';
import { planRotation, startRotation, type RotationPlan } from '$lib/server/certs/plan';
import { defineCertRole, listCertRoles, presentCertRole } from '$lib/server/certs/roles';
import { startScan } from '$lib/server/certs/scan';
import { expiryTimeline } from '$lib/server/certs/timeline';
import { config } from '$lib/server/config';
import { ServiceError } from '$lib/server/errors';
import { principalOf } from '$lib/server/http/api';
import { formError, parseForm } from '$lib/server/http/forms';
import type { Actions, PageServerLoad } from './$types';

export const load: PageServerLoad = async (event) => {
	event.depends('app:certificates');
	const principal = principalOf(event);
	const canAdmin = authorize(event.route.id, 'POST', '?/createCa', principal).allow;
	const [items, authorities, roles, issued] = await Promise.all([
		listInventory(),
		listAuthorities(),
		listCertRoles(),
		canAdmin ? listIssued() : []
	]);
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
		roleSettings: roles.map(presentCertRole),
		issued: issued.slice(0, 200).map((c) => {
			const p = presentIssued(c);
			return {
				id: p.id,
				serial: p.serial,
				node: p.node,
				role: p.role,
				not_after: iso(p.not_after),
				revoked_at: iso(p.revoked_at),
				revoke_reason: p.revoke_reason
			};
		}),
		issuedTotal: issued.length,
		canOperate: authorize(event.route.id, 'POST', '?/rotate', principal).allow,
		canAdmin
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

/** Words separated by spaces or commas; blank ones are only spacing. */
const words = (v: FormDataEntryValue | null) => (typeof v === 'string' ? v.split(/[\s,]+/).filter(Boolean) : []);

/**
 * The role form as the JSON endpoint's body: endpoints as `port` or `port:servername`, the reload command one
 * argument per line, extra SANs separated by spaces or commas.
 */
function roleFormShape(form: FormData) {
	const text = (k: string) => {
		const v = form.get(k);
		return typeof v === 'string' ? v.trim() : '';
	};
	const reload = form.get('reload_command');
	return {
		role: text('role'),
		cert_path: text('cert_path'),
		key_path: text('key_path'),
		endpoints: words(form.get('endpoints')).map((e) => {
			const [port, servername] = e.split(':');
			return { port, ...(servername ? { servername } : {}) };
		}),
		reload_command:
			typeof reload === 'string'
				? reload
						.split('\n')
						.map((l) => l.trim())
						.filter(Boolean)
				: [],
		issuer: text('issuer') || undefined,
		validity_days: text('validity_days') || undefined,
		extra_sans: words(form.get('extra_sans')),
		order: text('order') || undefined
	};
}

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
	},

	/** Imports an existing CA with its key as the internal CA: the key is sealed at once and never shown again. */
	importCa: async (event) => {
		const parsed = await parseForm(event.request, importCaSchema);
		if (!parsed.ok) return parsed.failure;
		try {
			const ca = await importInternalCa(actorOf(event), parsed.data);
			return { notice: `Imported ${ca.name} as the internal CA; its key is sealed in the database.` };
		} catch (err) {
			// Never echoed: the form holds a private key.
			return formError(err);
		}
	},

	/** Adds a CA (its certificate only) to the bundle chains are verified against. */
	trustCa: async (event) => {
		const parsed = await parseForm(event.request, trustCaSchema);
		if (!parsed.ok) return parsed.failure;
		try {
			const ca = await trustAuthority(actorOf(event), parsed.data);
			return { notice: `Added ${ca.name} to the trusted CAs.` };
		} catch (err) {
			return formError(err, parsed.form);
		}
	},

	revoke: async (event) => {
		const parsed = await parseForm(
			event.request,
			revokeSchema.extend({ id: z.uuid({ error: 'must be a certificate id' }) }).strict()
		);
		if (!parsed.ok) return parsed.failure;
		try {
			const c = await revokeIssued(actorOf(event), parsed.data.id, parsed.data.reason);
			return { notice: `Revoked certificate ${c.serial} of ${c.nodeName}; the next CRL lists it.` };
		} catch (err) {
			return formError(err);
		}
	},

	/** A role's TLS settings, as `POST /api/security/certificates/roles` takes them. */
	saveRole: async (event) => {
		const parsed = await parseForm(event.request, certRoleSchema, roleFormShape);
		if (!parsed.ok) return parsed.failure;
		try {
			const r = await defineCertRole(actorOf(event), parsed.data);
			return { notice: `Saved the certificate settings of role ${r.role}.` };
		} catch (err) {
			return formError(err, parsed.form);
		}
	}
};
