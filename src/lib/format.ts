/** Time between two ISO timestamps (or until `now` while still running), as operators read it: `42 s`, `3 min 5 s`, `2 h 10 min`. */
export function formatElapsed(from: string | null, to: string | null, now: number): string {
	if (!from) return '—';
	const s = Math.max(0, Math.round(((to ? new Date(to).getTime() : now) - new Date(from).getTime()) / 1000));
	if (s < 60) return `${s} s`;
	if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
	return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
