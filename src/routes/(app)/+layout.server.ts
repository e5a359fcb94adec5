import { authorize } from '$lib/server/auth/access';
import { principalOf } from '$lib/server/http/api';
import type { LayoutServerLoad } from './$types';

const navigation = [
	{ href: '/', routeId: '/(app)', label: 'Fleet Overview', icon: 'fleet' },
	{ href: '/runs', routeId: '/(app)/runs', label: 'Runs', icon: 'runs' },
	{ href: '/code-sync', routeId: '/(app)/code-sync', label: 'Code Sync', icon: 'code' },
	{ href: '/system-updates', routeId: '/(app)/system-updates', label: 'System Updates', icon: 'packages' },
	{ href: '/certificates', routeId: '/(app)/certificates', label: 'TLS Certificates', icon: 'certs' },
	{ href: '/rollouts', routeId: '/(app)/rollouts', label: 'Rollouts', icon: 'rollouts' },
	{ href: '/releases', routeId: '/(app)/releases', label: 'Releases', icon: 'releases' },
	{ href: '/audit', routeId: '/(app)/audit', label: 'Audit', icon: 'audit' },
	{ href: '/api-docs', routeId: '/(app)/api-docs', label: 'API', icon: 'api' },
	{ href: '/settings', routeId: '/(app)/settings', label: 'Settings', icon: 'settings' }
] as const;

// handle() has already authorised this request; the layout only decides which links to show, from the same
// access table, so a viewer is never offered a page that would answer 403.
export const load: LayoutServerLoad = async (event) => {
	const principal = principalOf(event);
	return {
		user: principal.user,
		nav: navigation.filter((item) => authorize(item.routeId, 'GET', '', principal).allow),
		canManageUsers: authorize('/(app)/settings/users', 'GET', '', principal).allow
	};
};
