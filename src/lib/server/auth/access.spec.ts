import { describe, expect, it } from 'vitest';
import { listRoutes } from '../../../../tests/support/routes';
import { accessPolicy, actionName, authorize, type Rule } from './access';
import type { Principal } from './principal';

const person = (role: 'viewer' | 'operator' | 'admin'): Principal => ({
	via: 'session',
	user: { id: 'u', username: role, role },
	level: ({ viewer: 'read', operator: 'operate', admin: 'admin' } as const)[role],
	sessionId: 's'
});
const token = (level: 'read' | 'operate' | 'admin'): Principal => ({
	via: 'token',
	user: { id: 'u', username: 'bot', role: 'admin' },
	level,
	tokenId: 't'
});

describe('the access table', () => {
	const routes = listRoutes();

	it('lists every route under src/routes, and nothing else', () => {
		expect(routes.length).toBeGreaterThan(10);
		expect(Object.keys(accessPolicy).sort()).toEqual(routes.map((r) => r.id).sort());
	});

	it('declares pages as pages and endpoints as endpoints', () => {
		for (const r of routes) expect(accessPolicy[r.id]!.kind, r.id).toBe(r.page ? 'page' : 'endpoint');
	});

	it('keeps every page of the console behind a browser session', () => {
		for (const r of routes.filter((r) => r.id.startsWith('/(app)'))) {
			const p = accessPolicy[r.id]!;
			if (p.kind !== 'page') throw new Error(`${r.id} should be a page`);
			expect(p.view, r.id).toMatchObject({ session: true });
			for (const rule of Object.values(p.actions ?? {})) expect(rule, r.id).toMatchObject({ session: true });
		}
	});

	it('opens only sign-in, set-up, sign-out, the health check and the CAs’ CRLs to anonymous callers', () => {
		const open = Object.entries(accessPolicy)
			.filter(([, p]) =>
				p.kind === 'page' ? p.view.level === 'public' : Object.values(p.methods).some((rule) => rule.level === 'public')
			)
			.map(([id]) => id)
			.sort();
		expect(open).toEqual(['/(auth)/login', '/(auth)/logout', '/(auth)/setup', '/crl/[id].crl', '/healthz']);
	});

	it('says, route by route, what the product intends (API.md scopes; pages for signed-in people)', () => {
		// Written out by hand on purpose: the authorisation matrix derives its expectations from the table, so
		// this is what catches a wrong entry in it. `session:` marks browser-only rules.
		const intended: Record<string, string> = {
			'/(auth)/login': 'GET public, POST default public',
			'/(auth)/setup': 'GET public, POST default public',
			'/(auth)/logout': 'POST public',
			'/(app)':
				'GET session:read, POST checkAll session:operate, POST plan session:operate, POST update session:operate',
			'/(app)/nodes/[id]':
				'GET session:read, POST check session:operate, POST plan session:operate, POST update session:operate, POST provision session:operate, POST acceptHostKey session:admin, POST edit session:admin, POST enrolAgent session:admin, POST installAgent session:admin, POST revokeAgent session:admin',
			'/(app)/nodes/[id]/appliance': 'GET session:read, POST install session:admin',
			'/(app)/runs': 'GET session:read',
			'/(app)/runs/[id]':
				'GET session:read, POST cancel session:operate, POST pause session:operate, POST resume session:operate, POST retryFailed session:operate',
			'/(app)/code-sync':
				'GET session:read, POST plan session:operate, POST update session:operate, POST pin session:operate, POST saveRole session:admin, POST saveProvisioning session:admin, POST deleteRole session:admin',
			'/(app)/system-updates':
				'GET session:read, POST scan session:operate, POST apply session:operate, POST saveWindow session:admin, POST deleteWindow session:admin, POST saveSchedule session:admin, POST skipWindow session:admin',
			'/(app)/rollouts': 'GET session:read, POST preview session:operate, POST create session:operate',
			'/(app)/rollouts/[id]':
				'GET session:read, POST advance session:operate, POST pause session:operate, POST resume session:operate, POST cancel session:operate, POST rollback session:operate',
			'/(app)/certificates':
				'GET session:read, POST scan session:operate, POST plan session:operate, POST rotate session:operate, POST createCa session:admin, POST importCa session:admin, POST trustCa session:admin, POST revoke session:admin, POST saveRole session:admin',
			'/(app)/releases': 'GET session:read',
			'/(app)/releases/[id]': 'GET session:read',
			'/(app)/audit': 'GET session:admin',
			'/(app)/api-docs': 'GET session:read',
			'/(app)/settings':
				'GET session:read, POST changePassword session:read, POST createToken session:read, POST revokeToken session:read, POST signOutEverywhere session:read',
			'/(app)/settings/nodes':
				'GET session:admin, POST createCredential session:admin, POST deleteCredential session:admin, POST createNode session:admin, POST deleteNode session:admin, POST bulk session:admin, POST check session:admin, POST acceptHostKey session:admin',
			'/(app)/settings/nodes/import': 'GET session:admin, POST preview session:admin, POST import session:admin',
			'/(app)/settings/ssh-keys':
				'GET session:admin, POST dryRun session:admin, POST rotate session:admin, POST retry session:admin',
			'/(app)/settings/users':
				'GET session:admin, POST create session:admin, POST update session:admin, POST resetPassword session:admin',
			'/(app)/settings/notifications':
				'GET session:admin, POST create session:admin, POST test session:admin, POST delete session:admin, POST settings session:admin',
			'/healthz': 'GET public',
			'/crl/[id].crl': 'GET public',
			'/api/version': 'GET read',
			'/api/openapi.json': 'GET read',
			'/api/me': 'GET read',
			'/api/auth/tokens': 'GET session:read, POST session:read',
			'/api/auth/tokens/[id]': 'DELETE session:read',
			'/api/users': 'GET admin, POST admin',
			'/api/users/[id]': 'GET admin, PATCH admin',
			'/api/users/[id]/password': 'POST admin',
			'/api/audit': 'GET admin',
			'/api/credentials': 'GET admin, POST admin',
			'/api/credentials/[id]': 'DELETE admin',
			'/api/notify/channels': 'GET admin, POST admin',
			'/api/notify/channels/[id]': 'GET admin, DELETE admin',
			'/api/notify/channels/[id]/test': 'POST admin',
			'/api/notify/settings': 'GET admin, PUT admin',
			'/api/nodes': 'GET read, POST admin',
			'/api/nodes/bulk': 'POST admin',
			'/api/nodes/[id]': 'GET read, PATCH admin, DELETE admin',
			'/api/nodes/[id]/appliance': 'GET read',
			'/api/nodes/[id]/check': 'POST operate',
			'/api/nodes/[id]/host-key/accept': 'POST admin',
			'/api/nodes/[id]/mark-synced': 'POST operate',
			'/api/nodes/[id]/provision': 'POST operate',
			'/api/nodes/[id]/agent': 'GET read, POST admin, DELETE admin',
			'/api/nodes/[id]/agent/enrol-token': 'POST admin',
			'/api/agents/enrol': 'POST agent',
			'/api/appliances/checkin': 'GET agent',
			'/api/updates/next': 'POST agent',
			'/api/updates/report': 'POST agent',
			'/api/roles': 'GET read, POST admin',
			'/api/roles/[name]': 'GET read, PATCH admin, DELETE admin',
			'/api/roles/[name]/pin': 'POST operate',
			'/api/roles/[name]/provisioning': 'GET read, PUT admin',
			'/api/code-source/notify': 'POST operate',
			'/api/updates/trigger': 'POST operate',
			'/api/updates/status': 'GET read',
			'/api/security/certificates': 'GET read',
			'/api/security/certificates/scan': 'POST operate',
			'/api/security/certificates/report': 'POST operate',
			'/api/security/certificates/rotate': 'POST operate',
			'/api/ssh-keys/rotate': 'POST admin',
			'/api/ssh-keys/rotations': 'GET admin',
			'/api/ssh-keys/rotations/[id]': 'GET admin',
			'/api/ssh-keys/rotations/[id]/retry': 'POST admin',
			'/api/security/certificates/ca': 'GET read, POST admin',
			'/api/security/certificates/ca/import': 'POST admin',
			'/api/security/certificates/ca/trust': 'POST admin',
			'/api/security/certificates/issued': 'GET read',
			'/api/security/certificates/issued/[id]/revoke': 'POST admin',
			'/api/security/certificates/crl': 'GET read',
			'/api/security/certificates/roles': 'GET read, POST admin',
			'/api/inventory/import': 'POST admin',
			'/api/releases': 'GET read, POST admin',
			'/api/releases/[id]': 'GET read',
			'/api/rollouts': 'GET read, POST operate',
			'/api/appliances/images': 'GET read, POST admin',
			'/api/appliances/images/[id]': 'GET read',
			'/api/appliances/images/[id]/content': 'PUT admin',
			'/api/appliances/push': 'POST operate',
			'/api/fleet/updates': 'POST admin',
			'/api/appliances/updates': 'GET read',
			'/api/appliances/bad-releases': 'GET read',
			'/api/appliances/bad-releases/[id]/clear': 'POST operate',
			'/api/rollouts/preview': 'POST read',
			'/api/rollouts/[id]': 'GET read',
			'/api/rollouts/[id]/advance': 'POST operate',
			'/api/rollouts/[id]/pause': 'POST operate',
			'/api/rollouts/[id]/resume': 'POST operate',
			'/api/rollouts/[id]/cancel': 'POST operate',
			'/api/rollouts/[id]/rollback': 'POST operate',
			'/api/updates/system': 'GET read',
			'/api/updates/system/[node_id]': 'POST operate',
			'/api/updates/system/holds': 'GET read, POST admin',
			'/api/updates/system/holds/[id]': 'DELETE admin',
			'/api/updates/system/scan': 'POST operate',
			'/api/updates/system/windows': 'GET read, POST admin',
			'/api/updates/system/windows/[id]': 'DELETE admin',
			'/api/updates/system/windows/[id]/skip': 'POST admin',
			'/api/runs': 'GET read, POST operate',
			'/api/runs/[id]': 'GET read',
			'/api/runs/[id]/cancel': 'POST operate',
			'/api/runs/[id]/pause': 'POST operate',
			'/api/runs/[id]/resume': 'POST operate',
			'/api/runs/[id]/retry-failed': 'POST operate',
			'/api/runs/[id]/events': 'GET read',
			'/api/runs/[id]/log': 'GET read',
			'/api/events': 'GET read',
			'/metrics': 'GET read'
		};
		const describeRule = (r: Rule) =>
			r.level === 'public' || r.level === 'agent' ? r.level : `${r.session ? 'session:' : ''}${r.level}`;
		const actual = Object.fromEntries(
			Object.entries(accessPolicy).map(([id, p]) => [
				id,
				p.kind === 'page'
					? [
							`GET ${describeRule(p.view)}`,
							...Object.entries(p.actions ?? {}).map(([a, r]) => `POST ${a} ${describeRule(r)}`)
						].join(', ')
					: Object.entries(p.methods)
							.map(([m, r]) => `${m} ${describeRule(r!)}`)
							.join(', ')
			])
		);
		expect(actual).toEqual(intended);
	});
});

describe('authorize', () => {
	it('sends anonymous callers to sign in, and lets them reach public routes', () => {
		expect(authorize('/(app)', 'GET', '', null)).toMatchObject({ allow: false, status: 401 });
		expect(authorize('/api/version', 'GET', '', null)).toMatchObject({ allow: false, status: 401 });
		expect(authorize('/healthz', 'GET', '', null)).toMatchObject({ allow: true });
		expect(authorize('/(auth)/login', 'POST', '', null)).toMatchObject({ allow: true });
		// A CRL is public and read-only: relying parties fetch it, and nobody may change anything there.
		expect(authorize('/crl/[id].crl', 'GET', '', null)).toMatchObject({ allow: true });
		expect(authorize('/crl/[id].crl', 'HEAD', '', null)).toMatchObject({ allow: true });
		expect(authorize('/crl/[id].crl', 'POST', '', null)).toMatchObject({ status: 405, allowed: ['GET'] });
	});

	it('ranks roles: viewers read, operators operate, admins administer', () => {
		expect(authorize('/(app)/audit', 'GET', '', person('operator'))).toMatchObject({ allow: false, status: 403 });
		expect(authorize('/(app)/audit', 'GET', '', person('admin'))).toMatchObject({ allow: true });
		expect(authorize('/(app)', 'GET', '', person('viewer'))).toMatchObject({ allow: true });
		expect(authorize('/api/users', 'POST', '', person('operator'))).toMatchObject({ status: 403 });
	});

	it('holds tokens to their scope and keeps them off session-only routes', () => {
		expect(authorize('/api/audit', 'GET', '', token('operate'))).toMatchObject({ status: 403 });
		expect(authorize('/api/audit', 'GET', '', token('admin'))).toMatchObject({ allow: true });
		expect(authorize('/api/auth/tokens', 'POST', '', token('admin'))).toMatchObject({ status: 403 });
		expect(authorize('/(app)', 'GET', '', token('admin'))).toMatchObject({ status: 403 });
	});

	it('picks the rule of the form action a POST names', () => {
		expect(actionName('?/resetPassword')).toBe('resetPassword');
		expect(actionName('')).toBe('default');
		// As SvelteKit reads it: the first parameter starting with '/', wherever it stands.
		expect(actionName('?x=1&/create')).toBe('create');
		expect(authorize('/(app)/settings/users', 'POST', '?x=1&/create', person('viewer'))).toMatchObject({ status: 403 });
		expect(authorize('/(app)/settings/users', 'POST', '?/create', person('operator'))).toMatchObject({ status: 403 });
		expect(authorize('/(app)/settings', 'POST', '?/createToken', person('viewer'))).toMatchObject({ allow: true });
		expect(authorize('/(app)/settings', 'POST', '?/nonsense', person('admin'))).toMatchObject({ status: 404 });
		// SvelteKit throws (a 500) on an explicit ?/default, even on pages whose only action is the default one.
		expect(actionName('?/default')).toBeNull();
		expect(authorize('/(auth)/login', 'POST', '', null)).toMatchObject({ allow: true });
		expect(authorize('/(auth)/login', 'POST', '?/default', null)).toMatchObject({ status: 404 });
		expect(authorize('/(app)/settings', 'POST', '?/default', person('admin'))).toMatchObject({ status: 404 });
		expect(authorize('/(app)/nodes/[id]', 'POST', '', person('admin'))).toMatchObject({ status: 404 });
	});

	it('refuses methods a route does not declare, and routes missing from the table', () => {
		expect(authorize('/api/audit', 'DELETE', '', person('admin'))).toMatchObject({ status: 405, allowed: ['GET'] });
		expect(authorize('/api/secret', 'GET', '', person('admin'))).toMatchObject({ status: 403 });
		expect(authorize('/healthz', 'HEAD', '', null)).toMatchObject({ allow: true });
	});
});
