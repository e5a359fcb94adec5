const probe = 'http://flotilla.invalid';

/**
 * Where to go after signing in: only a path on this console, never another site (open redirect).
 * The value is parsed the way a browser would parse it, so tricks like `//evil`, `/\evil` or a tab inside
 * `/\t/evil` (browsers drop tabs and newlines from URLs) resolve to another origin and are refused.
 */
export function safeNext(next: string | null): string {
	if (!next || !next.startsWith('/')) return '/';
	// eslint-disable-next-line no-control-regex -- a target with control characters is refused
	if (/[\u0000-\u001f\u007f\\]/.test(next)) return '/';
	let url: URL;
	try {
		url = new URL(next, probe);
	} catch {
		return '/';
	}
	return url.origin === probe ? url.pathname + url.search + url.hash : '/';
}
