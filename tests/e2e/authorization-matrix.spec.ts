import { expect, test } from './support/test';
import { accessPolicy, type Rule } from '../../src/lib/server/auth/access';
import { listHandlers } from '../support/handlers';
import { listRoutes } from '../support/routes';
import { bearer, call, cookie, postForm, loadTokens, signInAs, type Role, type Scope } from './support/console';

/**
 * Every route under src/routes × every method or form action it declares × every kind of caller, against
 * the running console. The expected answer follows from the route's declared rule alone, so a route added
 * tomorrow is covered without anyone writing a test for it.
 */
type Caller =
	| { name: string; kind: 'anonymous' }
	| { name: string; kind: 'session'; role: Role }
	| { name: string; kind: 'token'; scope: Scope };

const callers: Caller[] = [
	{ name: 'anonymous', kind: 'anonymous' },
	{ name: 'viewer session', kind: 'session', role: 'viewer' },
	{ name: 'operator session', kind: 'session', role: 'operator' },
	{ name: 'admin session', kind: 'session', role: 'admin' },
	{ name: 'read token', kind: 'token', scope: 'read' },
	{ name: 'operate token', kind: 'token', scope: 'operate' },
	{ name: 'admin token', kind: 'token', scope: 'admin' }
];

const rank = { read: 1, operate: 2, admin: 3 } as const;
const roleRank = { viewer: 1, operator: 2, admin: 3 } as const;

type Expected = 'allowed' | 'sign-in redirect' | 401 | 403;

/** Machine endpoints: bearer tokens count and refusals are JSON (hooks.server.ts treats /metrics the same). */
const isApiPath = (pathname: string) => pathname.startsWith('/api/') || pathname === '/metrics';

function expectedFor(rule: Rule, caller: Caller, pathname: string): Expected {
	if (rule.level === 'public') return 'allowed';
	// No caller here signs as a node's agent: the endpoint refuses every one of them.
	if (rule.level === 'agent') return 401;
	const isApi = isApiPath(pathname);
	// Bearer tokens count only on the API: on a page a token-only caller is anonymous.
	const anonymous = caller.kind === 'anonymous' || (caller.kind === 'token' && !isApi);
	if (anonymous) return isApi ? 401 : 'sign-in redirect';
	if (caller.kind === 'token') {
		if (rule.session) return 403;
		return rank[caller.scope] >= rank[rule.level] ? 'allowed' : 403;
	}
	return caller.kind === 'session' && roleRank[caller.role] >= rank[rule.level] ? 'allowed' : 403;
}

const someId = '00000000-0000-4000-8000-000000000000';
const concretePath = (routeId: string) => routeId.replace(/\/\([^)]+\)/g, '').replace(/\[[^\]]+\]/g, someId) || '/';

/** Where the console sends an anonymous browser, remembering where it was going. */
const signInRedirect = (target: string) => (target === '/' ? '/login' : `/login?next=${encodeURIComponent(target)}`);

interface Case {
	routeId: string;
	method: string;
	action?: string;
	rule: Rule;
}

const cases: Case[] = listRoutes().flatMap(({ id }) => {
	const policy = accessPolicy[id];
	if (!policy) return [{ routeId: id, method: 'GET', rule: { level: 'admin' } as Rule, missing: true }];
	if (policy.kind === 'page') {
		return [
			{ routeId: id, method: 'GET', rule: policy.view },
			...Object.entries(policy.actions ?? {}).map(([action, rule]) => ({ routeId: id, method: 'POST', action, rule }))
		];
	}
	return Object.entries(policy.methods).map(([method, rule]) => ({ routeId: id, method, rule: rule! }));
});

let tokens: Record<Scope, string>;
test.beforeAll(() => {
	tokens = loadTokens();
});

test('every route has a rule and the matrix covers all of them', () => {
	expect(cases.filter((c) => 'missing' in c)).toEqual([]);
	expect(new Set(cases.map((c) => c.routeId)).size).toBe(listRoutes().length);
	expect(cases.length).toBeGreaterThanOrEqual(25);
});

test('the access table lists exactly the methods and form actions the routes export', () => {
	// The matrix is built from the table; this ties the table to the code, so a method or action added to a
	// route (or dropped from it) without its rule fails here rather than answering 405 or 404 in production.
	const inCode = listHandlers().map((h) => `${h.method} ${h.routeId}${h.action ? ` ?/${h.action}` : ''}`);
	const inTable = cases.map((c) => `${c.method} ${c.routeId}${c.action ? ` ?/${c.action}` : ''}`);
	expect(inTable.sort()).toEqual(inCode.sort());
});

for (const c of cases) {
	const pathname = concretePath(c.routeId);
	const target = c.action ? `${pathname}?/${c.action}`.replace('?/default', '') : pathname;
	test(`${c.method} ${target}`, async () => {
		for (const caller of callers) {
			const headers: Record<string, string> = {};
			// A fresh session per request: some routes (sign out, sign out everywhere) end the session they get.
			if (caller.kind === 'session') Object.assign(headers, cookie(await signInAs(caller.role)));
			if (caller.kind === 'token') Object.assign(headers, bearer(tokens[caller.scope]));

			let res: Response;
			if (c.method === 'GET' || c.method === 'DELETE') {
				res = await call(target, { method: c.method, headers });
			} else if (c.action !== undefined || !isApiPath(pathname)) {
				res = await postForm(target, {}, headers);
			} else {
				res = await call(target, { method: c.method, headers, json: {} });
			}

			const expected = expectedFor(c.rule, caller, pathname);
			const seen = `${caller.name} got ${res.status} ${res.headers.get('location') ?? ''}`;
			if (expected === 'allowed') {
				expect(res.status, seen).toBeLessThan(500);
				// The route itself answered, not the hook's fallback for paths that match no route.
				if (res.status === 404) expect(await res.text(), seen).not.toContain('No such endpoint');
				expect([401, 403, 405], seen).not.toContain(res.status);
				expect(res.headers.get('location'), seen).not.toBe(signInRedirect(target));
			} else if (expected === 'sign-in redirect') {
				expect(res.status, seen).toBe(303);
				expect(res.headers.get('location'), seen).toBe(signInRedirect(target));
			} else {
				expect(res.status, seen).toBe(expected);
				if (isApiPath(pathname)) {
					const body = await res.json();
					expect(body.error.code, seen).toBe(expected === 401 ? 'unauthenticated' : 'forbidden');
				}
			}
		}
	});
}
