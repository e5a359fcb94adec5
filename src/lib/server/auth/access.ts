import { levelAtLeast, type Level } from './levels';
import type { Principal } from './principal';

/**
 * Who may do what, for every route of the console, in one table. `handle` consults it before any page
 * load, form action or endpoint runs, so authorisation cannot be forgotten in a route and is not left
 * to layout loads (which client-side navigation can skip). A route missing from this table is refused
 * (fail closed), and a test walks `src/routes` to prove every route is listed here.
 *
 * - `public`: anyone, signed in or not.
 * - a level (`read` | `operate` | `admin`): a session whose role reaches it, or an API token whose
 *   scope (capped by its owner's role) reaches it.
 * - `session: true`: browser sessions only; API tokens are refused. Every page is session-only.
 * - `agent`: a node's pull agent. No session or token: the endpoint itself refuses (401) a request not
 *   signed with an enrolled node's secret (docs/pull-agent.md, "Signatures"), or, for the agent's enrolment,
 *   one without a valid one-time enrolment token.
 */
export type Rule = { level: 'public' } | { level: 'agent' } | { level: Level; session?: boolean };

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export type RoutePolicy =
	| { kind: 'page'; view: Rule; actions?: Record<string, Rule> }
	| { kind: 'endpoint'; methods: Partial<Record<Method, Rule>> };

const open: Rule = { level: 'public' };
const agentSigned: Rule = { level: 'agent' };
/** Any signed-in person, in a browser: pages, and managing one's own tokens. */
const signedIn: Rule = { level: 'read', session: true };
const operatorPage: Rule = { level: 'operate', session: true };
const adminPage: Rule = { level: 'admin', session: true };
const read: Rule = { level: 'read' };
const operate: Rule = { level: 'operate' };
const admin: Rule = { level: 'admin' };

export const accessPolicy: Record<string, RoutePolicy> = {
	// Signing in and out.
	'/(auth)/login': { kind: 'page', view: open, actions: { default: open } },
	'/(auth)/setup': { kind: 'page', view: open, actions: { default: open } },
	'/(auth)/logout': { kind: 'endpoint', methods: { POST: open } },

	// The console's pages.
	'/(app)': {
		kind: 'page',
		view: signedIn,
		actions: { checkAll: operatorPage, plan: operatorPage, update: operatorPage }
	},
	'/(app)/nodes/[id]': {
		kind: 'page',
		view: signedIn,
		actions: {
			check: operatorPage,
			plan: operatorPage,
			update: operatorPage,
			provision: operatorPage,
			acceptHostKey: adminPage,
			edit: adminPage,
			enrolAgent: adminPage,
			installAgent: adminPage,
			revokeAgent: adminPage
		}
	},
	'/(app)/nodes/[id]/appliance': { kind: 'page', view: signedIn, actions: { install: adminPage } },
	'/(app)/runs': { kind: 'page', view: signedIn },
	'/(app)/runs/[id]': {
		kind: 'page',
		view: signedIn,
		actions: { cancel: operatorPage, pause: operatorPage, resume: operatorPage, retryFailed: operatorPage }
	},
	'/(app)/code-sync': {
		kind: 'page',
		view: signedIn,
		actions: {
			plan: operatorPage,
			update: operatorPage,
			pin: operatorPage,
			saveRole: adminPage,
			saveProvisioning: adminPage,
			deleteRole: adminPage
		}
	},
	'/(app)/system-updates': {
		kind: 'page',
		view: signedIn,
		actions: {
			scan: operatorPage,
			apply: operatorPage,
			saveWindow: adminPage,
			deleteWindow: adminPage,
			saveSchedule: adminPage,
			skipWindow: adminPage
		}
	},
	'/(app)/rollouts': { kind: 'page', view: signedIn, actions: { preview: operatorPage, create: operatorPage } },
	'/(app)/rollouts/[id]': {
		kind: 'page',
		view: signedIn,
		actions: {
			advance: operatorPage,
			pause: operatorPage,
			resume: operatorPage,
			cancel: operatorPage,
			rollback: operatorPage
		}
	},
	'/(app)/certificates': {
		kind: 'page',
		view: signedIn,
		actions: {
			scan: operatorPage,
			plan: operatorPage,
			rotate: operatorPage,
			createCa: adminPage,
			importCa: adminPage,
			trustCa: adminPage,
			revoke: adminPage,
			saveRole: adminPage
		}
	},
	'/(app)/releases': { kind: 'page', view: signedIn },
	'/(app)/releases/[id]': { kind: 'page', view: signedIn },
	'/(app)/audit': { kind: 'page', view: adminPage },
	'/(app)/api-docs': { kind: 'page', view: signedIn },
	'/(app)/settings': {
		kind: 'page',
		view: signedIn,
		actions: { changePassword: signedIn, createToken: signedIn, revokeToken: signedIn, signOutEverywhere: signedIn }
	},
	'/(app)/settings/nodes': {
		kind: 'page',
		view: adminPage,
		actions: {
			createCredential: adminPage,
			deleteCredential: adminPage,
			createNode: adminPage,
			deleteNode: adminPage,
			bulk: adminPage,
			check: adminPage,
			acceptHostKey: adminPage
		}
	},
	'/(app)/settings/nodes/import': {
		kind: 'page',
		view: adminPage,
		actions: { preview: adminPage, import: adminPage }
	},
	'/(app)/settings/ssh-keys': {
		kind: 'page',
		view: adminPage,
		actions: { dryRun: adminPage, rotate: adminPage, retry: adminPage }
	},
	'/(app)/settings/users': {
		kind: 'page',
		view: adminPage,
		actions: { create: adminPage, update: adminPage, resetPassword: adminPage }
	},
	'/(app)/settings/notifications': {
		kind: 'page',
		view: adminPage,
		actions: { create: adminPage, test: adminPage, delete: adminPage, settings: adminPage }
	},

	// Service endpoints.
	'/healthz': { kind: 'endpoint', methods: { GET: open } },
	// A CA's CRL: relying parties fetch it, unauthenticated, from the URL in the certificates the CA issued
	// (docs/certificates.md). Read-only, and it holds only serials and dates, which those certificates show anyway.
	'/crl/[id].crl': { kind: 'endpoint', methods: { GET: open } },

	// The JSON API (docs/api.md).
	'/api/version': { kind: 'endpoint', methods: { GET: read } },
	'/api/openapi.json': { kind: 'endpoint', methods: { GET: read } },
	'/api/me': { kind: 'endpoint', methods: { GET: read } },
	'/api/auth/tokens': { kind: 'endpoint', methods: { GET: signedIn, POST: signedIn } },
	'/api/auth/tokens/[id]': { kind: 'endpoint', methods: { DELETE: signedIn } },
	'/api/users': { kind: 'endpoint', methods: { GET: admin, POST: admin } },
	'/api/users/[id]': { kind: 'endpoint', methods: { GET: admin, PATCH: admin } },
	'/api/users/[id]/password': { kind: 'endpoint', methods: { POST: admin } },
	'/api/audit': { kind: 'endpoint', methods: { GET: admin } },
	'/api/credentials': { kind: 'endpoint', methods: { GET: admin, POST: admin } },
	'/api/credentials/[id]': { kind: 'endpoint', methods: { DELETE: admin } },
	'/api/notify/channels': { kind: 'endpoint', methods: { GET: admin, POST: admin } },
	'/api/notify/channels/[id]': { kind: 'endpoint', methods: { GET: admin, DELETE: admin } },
	'/api/notify/channels/[id]/test': { kind: 'endpoint', methods: { POST: admin } },
	'/api/notify/settings': { kind: 'endpoint', methods: { GET: admin, PUT: admin } },
	'/api/nodes': { kind: 'endpoint', methods: { GET: read, POST: admin } },
	'/api/nodes/bulk': { kind: 'endpoint', methods: { POST: admin } },
	'/api/nodes/[id]': { kind: 'endpoint', methods: { GET: read, PATCH: admin, DELETE: admin } },
	'/api/nodes/[id]/appliance': { kind: 'endpoint', methods: { GET: read } },
	'/api/nodes/[id]/check': { kind: 'endpoint', methods: { POST: operate } },
	'/api/nodes/[id]/host-key/accept': { kind: 'endpoint', methods: { POST: admin } },
	'/api/nodes/[id]/mark-synced': { kind: 'endpoint', methods: { POST: operate } },
	'/api/nodes/[id]/provision': { kind: 'endpoint', methods: { POST: operate } },
	'/api/nodes/[id]/agent': { kind: 'endpoint', methods: { GET: read, POST: admin, DELETE: admin } },
	'/api/nodes/[id]/agent/enrol-token': { kind: 'endpoint', methods: { POST: admin } },
	'/api/agents/enrol': { kind: 'endpoint', methods: { POST: agentSigned } },
	'/api/updates/next': { kind: 'endpoint', methods: { POST: agentSigned } },
	'/api/updates/report': { kind: 'endpoint', methods: { POST: agentSigned } },
	'/api/appliances/checkin': { kind: 'endpoint', methods: { GET: agentSigned } },
	'/api/roles': { kind: 'endpoint', methods: { GET: read, POST: admin } },
	'/api/roles/[name]': { kind: 'endpoint', methods: { GET: read, PATCH: admin, DELETE: admin } },
	'/api/roles/[name]/pin': { kind: 'endpoint', methods: { POST: operate } },
	'/api/roles/[name]/provisioning': { kind: 'endpoint', methods: { GET: read, PUT: admin } },
	'/api/code-source/notify': { kind: 'endpoint', methods: { POST: operate } },
	'/api/updates/trigger': { kind: 'endpoint', methods: { POST: operate } },
	'/api/updates/status': { kind: 'endpoint', methods: { GET: read } },
	'/api/inventory/import': { kind: 'endpoint', methods: { POST: admin } },
	'/api/updates/system': { kind: 'endpoint', methods: { GET: read } },
	'/api/updates/system/scan': { kind: 'endpoint', methods: { POST: operate } },
	'/api/updates/system/[node_id]': { kind: 'endpoint', methods: { POST: operate } },
	'/api/updates/system/holds': { kind: 'endpoint', methods: { GET: read, POST: admin } },
	'/api/updates/system/holds/[id]': { kind: 'endpoint', methods: { DELETE: admin } },
	'/api/updates/system/windows': { kind: 'endpoint', methods: { GET: read, POST: admin } },
	'/api/updates/system/windows/[id]': { kind: 'endpoint', methods: { DELETE: admin } },
	'/api/updates/system/windows/[id]/skip': { kind: 'endpoint', methods: { POST: admin } },
	'/api/releases': { kind: 'endpoint', methods: { GET: read, POST: admin } },
	'/api/releases/[id]': { kind: 'endpoint', methods: { GET: read } },
	'/api/rollouts': { kind: 'endpoint', methods: { GET: read, POST: operate } },
	'/api/appliances/images': { kind: 'endpoint', methods: { GET: read, POST: admin } },
	'/api/appliances/images/[id]': { kind: 'endpoint', methods: { GET: read } },
	'/api/appliances/images/[id]/content': { kind: 'endpoint', methods: { PUT: admin } },
	'/api/appliances/push': { kind: 'endpoint', methods: { POST: operate } },
	// Writes maintenance windows as well as a rollout: an admin's, as windows are.
	'/api/fleet/updates': { kind: 'endpoint', methods: { POST: admin } },
	'/api/appliances/updates': { kind: 'endpoint', methods: { GET: read } },
	'/api/appliances/bad-releases': { kind: 'endpoint', methods: { GET: read } },
	'/api/appliances/bad-releases/[id]/clear': { kind: 'endpoint', methods: { POST: operate } },
	'/api/rollouts/preview': { kind: 'endpoint', methods: { POST: read } },
	'/api/rollouts/[id]': { kind: 'endpoint', methods: { GET: read } },
	'/api/rollouts/[id]/advance': { kind: 'endpoint', methods: { POST: operate } },
	'/api/rollouts/[id]/pause': { kind: 'endpoint', methods: { POST: operate } },
	'/api/rollouts/[id]/resume': { kind: 'endpoint', methods: { POST: operate } },
	'/api/rollouts/[id]/cancel': { kind: 'endpoint', methods: { POST: operate } },
	'/api/rollouts/[id]/rollback': { kind: 'endpoint', methods: { POST: operate } },
	'/api/security/certificates': { kind: 'endpoint', methods: { GET: read } },
	'/api/security/certificates/scan': { kind: 'endpoint', methods: { POST: operate } },
	'/api/security/certificates/report': { kind: 'endpoint', methods: { POST: operate } },
	'/api/security/certificates/rotate': { kind: 'endpoint', methods: { POST: operate } },
	'/api/ssh-keys/rotate': { kind: 'endpoint', methods: { POST: admin } },
	'/api/ssh-keys/rotations': { kind: 'endpoint', methods: { GET: admin } },
	'/api/ssh-keys/rotations/[id]': { kind: 'endpoint', methods: { GET: admin } },
	'/api/ssh-keys/rotations/[id]/retry': { kind: 'endpoint', methods: { POST: admin } },
	'/api/security/certificates/ca': { kind: 'endpoint', methods: { GET: read, POST: admin } },
	'/api/security/certificates/ca/import': { kind: 'endpoint', methods: { POST: admin } },
	'/api/security/certificates/ca/trust': { kind: 'endpoint', methods: { POST: admin } },
	'/api/security/certificates/issued': { kind: 'endpoint', methods: { GET: read } },
	'/api/security/certificates/issued/[id]/revoke': { kind: 'endpoint', methods: { POST: admin } },
	'/api/security/certificates/crl': { kind: 'endpoint', methods: { GET: read } },
	'/api/security/certificates/roles': { kind: 'endpoint', methods: { GET: read, POST: admin } },
	'/api/runs': { kind: 'endpoint', methods: { GET: read, POST: operate } },
	'/api/runs/[id]': { kind: 'endpoint', methods: { GET: read } },
	'/api/runs/[id]/cancel': { kind: 'endpoint', methods: { POST: operate } },
	'/api/runs/[id]/pause': { kind: 'endpoint', methods: { POST: operate } },
	'/api/runs/[id]/resume': { kind: 'endpoint', methods: { POST: operate } },
	'/api/runs/[id]/retry-failed': { kind: 'endpoint', methods: { POST: operate } },
	'/api/runs/[id]/events': { kind: 'endpoint', methods: { GET: read } },
	'/api/runs/[id]/log': { kind: 'endpoint', methods: { GET: read } },
	'/api/events': { kind: 'endpoint', methods: { GET: read } },
	'/metrics': { kind: 'endpoint', methods: { GET: read } }
};

export type Decision =
	{ allow: true; rule: Rule } | { allow: false; status: 401 | 403 | 404 | 405; message: string; allowed?: string[] };

/**
 * The form action a POST to a page names, read exactly as SvelteKit reads it: the first query parameter,
 * wherever it stands, whose name starts with `/`; `default` when there is none. Null for an explicit
 * `?/default`: SvelteKit reserves that name and throws on it (a 500), so it is refused like a missing action.
 */
export function actionName(search: string): string | null {
	for (const [name] of new URLSearchParams(search)) {
		if (name.startsWith('/')) return name === '/default' ? null : name.slice(1);
	}
	return 'default';
}

export function ruleFor(
	routeId: string,
	method: string,
	search: string
): Rule | { missing: 'route' | 'method' | 'action'; allowed?: string[] } {
	const policy = Object.hasOwn(accessPolicy, routeId) ? accessPolicy[routeId] : undefined;
	if (!policy) return { missing: 'route' };
	const m = method === 'HEAD' ? 'GET' : method;
	if (policy.kind === 'page') {
		if (m === 'GET') return policy.view;
		if (m === 'POST') {
			if (!policy.actions) return { missing: 'method', allowed: ['GET'] };
			const action = actionName(search);
			// Own properties only: a name like `constructor` must not find Object.prototype's.
			return (
				(action !== null && Object.hasOwn(policy.actions, action) && policy.actions[action]) || { missing: 'action' }
			);
		}
		return { missing: 'method', allowed: policy.actions ? ['GET', 'POST'] : ['GET'] };
	}
	const rule = Object.hasOwn(policy.methods, m) ? policy.methods[m as Method] : undefined;
	return rule ?? { missing: 'method', allowed: Object.keys(policy.methods) };
}

export function authorize(routeId: string, method: string, search: string, principal: Principal | null): Decision {
	const rule = ruleFor(routeId, method, search);
	if ('missing' in rule) {
		if (rule.missing === 'route') {
			return { allow: false, status: 403, message: `No access rule is declared for ${routeId}` };
		}
		if (rule.missing === 'action') {
			return { allow: false, status: 404, message: `This page has no form action ${search || '(default)'}` };
		}
		return { allow: false, status: 405, message: `${method} is not allowed here`, allowed: rule.allowed };
	}
	if (rule.level === 'public' || rule.level === 'agent') return { allow: true, rule };
	if (!principal) return { allow: false, status: 401, message: 'Sign in or send an API token' };
	if (rule.session && principal.via !== 'session') {
		return { allow: false, status: 403, message: 'This needs a browser session; API tokens are not accepted here' };
	}
	if (!levelAtLeast(principal.level, rule.level)) {
		return {
			allow: false,
			status: 403,
			message:
				principal.via === 'token'
					? `This needs a token with the ${rule.level} scope`
					: `This needs the ${levelRole[rule.level]} role`
		};
	}
	return { allow: true, rule };
}

const levelRole: Record<Level, string> = { read: 'viewer', operate: 'operator', admin: 'admin' };
