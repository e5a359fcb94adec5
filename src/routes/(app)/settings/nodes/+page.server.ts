import { z } from 'zod';
import { uuidSchema } from '$lib/schemas/common';
import { acceptHostKeySchema, bulkNodesSchema, createCredentialSchema, createNodeSchema } from '$lib/schemas/nodes';
import { bulkNodes } from '$lib/server/fleet/bulk';
import { plural } from '$lib/format';
import { actorOf } from '$lib/server/audit';
import { acceptHostKey } from '$lib/server/fleet/host-keys';
import { checkNodeFor } from '$lib/server/fleet/checks';
import { nodesWithHistory } from '$lib/server/engine';
import { connectionStatus, createNode, deleteNode, listNodes } from '$lib/server/fleet/nodes';
import { createCredential, deleteCredential, listCredentials } from '$lib/server/keys/credentials';
import { formError, parseForm } from '$lib/server/http/forms';
import { nodeFormShape } from '$lib/server/fleet/node-form';
import type { Actions, PageServerLoad } from './$types';

export const load: PageServerLoad = async () => {
	const [page, creds] = await Promise.all([listNodes({ limit: 500 }), listCredentials()]);
	// A node with run history is removed only when its name is typed (deleteNode).
	const withHistory = await nodesWithHistory(page.items.map((n) => n.id));
	return {
		credentials: creds,
		nodes: page.items.map((n) => ({ ...n, connection: connectionStatus(n), hasHistory: withHistory.has(n.id) })),
		more: page.nextCursor !== null
	};
};

const idForm = z.object({ id: uuidSchema });
const deleteNodeForm = idForm.extend({ confirm_name: z.string().max(200, 'is too long').optional() });

/** The bulk bar sends its role and policy fields whatever the action; only the one the action takes is read. */
function bulkFormShape(form: FormData) {
	const action = form.get('action');
	const text = (k: string) => {
		const v = form.get(k);
		return typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined;
	};
	return {
		action,
		nodes: form.getAll('nodes'),
		...(action === 'add_role' || action === 'remove_role' ? { role: text('role') } : {}),
		...(action === 'set_policy' ? { policy: text('policy') } : {})
	};
}

const bulkDone: Record<string, (d: { role?: string; policy?: string }) => string> = {
	add_role: (d) => `Added the role ${d.role} to`,
	remove_role: (d) => `Removed the role ${d.role} from`,
	set_policy: (d) => `Set the update policy to ${d.policy} on`,
	delete: () => 'Deleted'
};

export const actions: Actions = {
	createCredential: async (event) => {
		const parsed = await parseForm(event.request, createCredentialSchema);
		if (!parsed.ok) return parsed.failure;
		try {
			const c = await createCredential(actorOf(event), {
				name: parsed.data.name,
				privateKey: parsed.data.private_key,
				passphrase: parsed.data.passphrase || undefined
			});
			return { notice: `Stored credential ${c.name} (${c.fingerprint}).` };
		} catch (err) {
			return formError(err, parsed.form);
		}
	},

	deleteCredential: async (event) => {
		const parsed = await parseForm(event.request, idForm);
		if (!parsed.ok) return parsed.failure;
		try {
			await deleteCredential(actorOf(event), parsed.data.id);
			return { notice: 'Credential deleted.' };
		} catch (err) {
			return formError(err);
		}
	},

	createNode: async (event) => {
		const parsed = await parseForm(event.request, createNodeSchema, nodeFormShape);
		if (!parsed.ok) return parsed.failure;
		try {
			const node = await createNode(actorOf(event), parsed.data);
			return { notice: `Added ${node.name}. Test its connection to see its host key.` };
		} catch (err) {
			return formError(err, parsed.form);
		}
	},

	deleteNode: async (event) => {
		const parsed = await parseForm(event.request, deleteNodeForm);
		if (!parsed.ok) return parsed.failure;
		try {
			await deleteNode(actorOf(event), parsed.data.id, { typedName: parsed.data.confirm_name });
			return { notice: 'Node removed.' };
		} catch (err) {
			return formError(err);
		}
	},

	bulk: async (event) => {
		const parsed = await parseForm(event.request, bulkNodesSchema, bulkFormShape);
		if (!parsed.ok) return parsed.failure;
		try {
			const typed = parsed.form.get('confirm_name');
			const done = await bulkNodes(actorOf(event), parsed.data, {
				typed: typeof typed === 'string' ? typed : undefined
			});
			const names = done.nodes.map((n) => n.name).join(', ');
			return { notice: `${bulkDone[done.action]!(parsed.data)} ${plural(done.nodes.length, 'node')}: ${names}.` };
		} catch (err) {
			return formError(err, parsed.form);
		}
	},

	check: async (event) => {
		const parsed = await parseForm(event.request, idForm);
		if (!parsed.ok) return parsed.failure;
		try {
			const { node, result } = await checkNodeFor(actorOf(event), parsed.data.id);
			return { check: { nodeId: node.id, name: node.name, ...result } };
		} catch (err) {
			return formError(err);
		}
	},

	acceptHostKey: async (event) => {
		const parsed = await parseForm(event.request, idForm.extend(acceptHostKeySchema.shape));
		if (!parsed.ok) return parsed.failure;
		try {
			const node = await acceptHostKey(actorOf(event), parsed.data.id, parsed.data.fingerprint);
			return { notice: `Pinned ${parsed.data.fingerprint} for ${node.name}.` };
		} catch (err) {
			return formError(err);
		}
	}
};
