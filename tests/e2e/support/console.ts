import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import postgres from 'postgres';

/** The console under test (see playwright.config.ts and serve.mjs). */
export const baseURL = `http://127.0.0.1:${Number(process.env.FLOTILLA_E2E_PORT ?? 4391)}`;

export type Role = 'viewer' | 'operator' | 'admin';
export type Scope = 'read' | 'operate' | 'admin';

export const people: Record<Role, { username: string; password: string }> = {
	admin: { username: 'admin', password: 'e2e admin passphrase one' },
	operator: { username: 'oscar', password: 'e2e operator passphrase' },
	viewer: { username: 'vera', password: 'e2e viewer passphrase' }
};

const stateFile = path.resolve('tests/e2e/.state/tokens.json');

/** API tokens of each scope, made by the set-up project and read by the specs. */
export function saveTokens(tokens: Record<Scope, string>): void {
	mkdirSync(path.dirname(stateFile), { recursive: true });
	writeFileSync(stateFile, JSON.stringify(tokens));
}

export function loadTokens(): Record<Scope, string> {
	return JSON.parse(readFileSync(stateFile, 'utf8'));
}

/** Direct access to the console's database, to check what it stores. */
export function consoleDatabase(): postgres.Sql {
	const url = new URL(process.env.TEST_DATABASE_URL!);
	url.pathname = `/${process.env.FLOTILLA_E2E_DB ?? 'flotilla_e2e'}`;
	return postgres(url.toString(), { max: 1, onnotice: () => {} });
}

/**
 * A plain HTTP client with no cookie jar, so that each request carries exactly the credentials given.
 * Changes made with a session cookie carry the console's own Origin, as its pages send them, unless the caller
 * names another; calls with a token carry none, as scripts send them.
 */
export function call(pathname: string, init: RequestInit & { json?: unknown } = {}): Promise<Response> {
	const headers = new Headers(init.headers);
	if (init.method && init.method !== 'GET' && headers.has('cookie') && !headers.has('origin')) {
		headers.set('origin', baseURL);
	}
	let body = init.body;
	if (init.json !== undefined) {
		headers.set('content-type', 'application/json');
		body = JSON.stringify(init.json);
	}
	return fetch(baseURL + pathname, { redirect: 'manual', ...init, headers, body });
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
export const cookie = (session: string) => ({ cookie: session });

/** A same-origin form post, as a browser without JavaScript sends it (SvelteKit answers HTML and 303s). */
export function postForm(pathname: string, fields: Record<string, string | string[]>, headers: HeadersInit = {}) {
	const form = new URLSearchParams();
	for (const [k, v] of Object.entries(fields)) for (const one of [v].flat()) form.append(k, one);
	return call(pathname, {
		method: 'POST',
		body: form,
		headers: { origin: baseURL, accept: 'text/html', 'content-type': 'application/x-www-form-urlencoded', ...headers }
	});
}

/** Signs in through the login form and returns the `Cookie` header value of the new session. */
export async function signIn(username: string, password: string): Promise<string> {
	const res = await postForm('/login', { username, password });
	const session = res.headers.getSetCookie().find((c) => c.startsWith('flotilla_session='));
	if (res.status !== 303 || !session) throw new Error(`sign-in as ${username} failed with ${res.status}`);
	return session.split(';')[0]!;
}

export const signInAs = (role: Role) => signIn(people[role].username, people[role].password);
