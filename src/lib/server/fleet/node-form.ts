import type { Node } from '$lib/server/db/schema';

/**
 * The node forms (add in Settings → Nodes, edit on a node's page) send roles as "a, b" and labels as
 * "k=v, k2=v2"; they become the list and the object the JSON endpoint takes, and then the same schema checks them.
 */
export function nodeFormShape(form: FormData) {
	const text = (k: string) => {
		const v = form.get(k);
		return typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined;
	};
	const labels: Record<string, string> = {};
	for (const pair of (text('labels') ?? '').split(',').filter((p) => p.trim())) {
		const [k, ...v] = pair.split('=');
		labels[k!.trim()] = v.join('=').trim();
	}
	return {
		name: text('name'),
		host: text('host'),
		port: text('port'),
		user: text('user'),
		credential_id: text('credential_id'),
		jump_node_id: text('jump_node_id') ?? null,
		kind: text('kind'),
		roles: (text('roles') ?? '')
			.split(',')
			.map((r) => r.trim())
			.filter(Boolean),
		labels,
		// Empty: the node takes its roles' default policy.
		policy: text('policy') ?? null,
		control_plane: form.get('control_plane') === 'on',
		host_key_fingerprint: text('host_key_fingerprint')
	};
}

/**
 * The edit form sends every field, so a field left empty is a mistake to name, not "leave it unchanged" as a
 * missing key is to PATCH. It has no fingerprint (a key changes only by review); the update schema refuses
 * unknown keys.
 */
export function nodeEditShape(form: FormData) {
	// eslint-disable-next-line @typescript-eslint/no-unused-vars
	const { host_key_fingerprint, ...rest } = nodeFormShape(form);
	return {
		...rest,
		name: rest.name ?? '',
		host: rest.host ?? '',
		port: rest.port ?? '',
		user: rest.user ?? '',
		credential_id: rest.credential_id ?? '',
		kind: rest.kind ?? ''
	};
}

/** A node as the form shows it: the text the fields hold, the way nodeFormShape reads them back. */
export function nodeFormValues(node: Node): Record<string, string> {
	return {
		name: node.name,
		host: node.host,
		port: String(node.port),
		user: node.username,
		roles: node.roles.join(', '),
		labels: Object.entries(node.labels)
			.map(([k, v]) => `${k}=${v}`)
			.join(', '),
		credential_id: node.credentialId,
		jump_node_id: node.jumpNodeId ?? '',
		kind: node.kind,
		policy: node.policy ?? '',
		control_plane: node.controlPlane ? 'on' : ''
	};
}
