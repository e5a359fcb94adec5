/** Time between two ISO timestamps (or until `now` while still running), as operators read it: `42 s`, `3 min 5 s`, `2 h 10 min`. */
export function formatElapsed(from: string | null, to: string | null, now: number): string {
	if (!from) return '—';
	const s = Math.max(0, Math.round(((to ? new Date(to).getTime() : now) - new Date(from).getTime()) / 1000));
	if (s < 60) return `${s} s`;
	if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
	return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

const dateStyles = {
	/** 30/11/2026, 17:05 */
	short: { dateStyle: 'short', timeStyle: 'short' },
	/** 30/11/2026, 17:05:42: events and steps, where seconds matter. */
	seconds: { dateStyle: 'short', timeStyle: 'medium' },
	/** 30 Nov 2026, 17:05 */
	medium: { dateStyle: 'medium', timeStyle: 'short' },
	/** 30 Nov 2026 */
	day: { dateStyle: 'medium' }
} satisfies Record<string, Intl.DateTimeFormatOptions>;
const formatters = new Map<keyof typeof dateStyles, Intl.DateTimeFormat>();

/** A date and time as the console shows them, in the reader's locale; `—` for none. */
export function formatDate(d: Date | string | null | undefined, style: keyof typeof dateStyles = 'short'): string {
	if (!d) return '—';
	let f = formatters.get(style);
	if (!f) formatters.set(style, (f = new Intl.DateTimeFormat(undefined, dateStyles[style])));
	return f.format(new Date(d));
}

/** A database timestamp as the pages' data carry it (ISO 8601), or null. */
export const iso = (d: Date | null) => d?.toISOString() ?? null;

/** "1 node", "3 nodes": a count with its noun. */
export const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
