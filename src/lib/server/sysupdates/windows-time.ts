import { localTime } from '$lib/clock';

/**
 * Maintenance windows as wall-clock time (docs/system-updates.md, "Maintenance windows"): a start and end
 * (`HH:MM`, an end at or before the start runs past midnight), a time zone and the days of the week it opens
 * on. Pure functions on Intl only, so daylight-saving changes follow the zone's own rules.
 */
export interface WindowSpec {
	start: string;
	end: string;
	timeZone: string;
	/** 0 = Sunday … 6 = Saturday: the days the window opens on. */
	days: number[];
	/** The window is skipped until this moment (set by "skip the next window"). */
	skipUntil?: Date | null;
}

const minutesOf = (hhmm: string) => {
	const [h, m] = hhmm.split(':').map(Number);
	return h! * 60 + m!;
};

/** Whether the window is open at `at` (a skipped window is not). */
export function insideWindow(w: WindowSpec, at: Date): boolean {
	if (w.skipUntil && at < w.skipUntil) return false;
	return openAt(w, at);
}

function openAt(w: WindowSpec, at: Date): boolean {
	const t = localTime(at, w.timeZone);
	const now = t.hour * 60 + t.minute;
	const start = minutesOf(w.start);
	const end = minutesOf(w.end);
	if (start < end) return w.days.includes(t.weekday) && now >= start && now < end;
	// Past midnight: open from the start on an opening day, or before the end on the day after one.
	return (w.days.includes(t.weekday) && now >= start) || (w.days.includes((t.weekday + 6) % 7) && now < end);
}

const MINUTE = 60_000;
/** Windows open at least weekly; eight days covers a week plus a window running past midnight. */
const HORIZON = 8 * 24 * 60;

/** The next time the window opens after `from` and when it closes again (null: it never opens). */
export function nextWindow(w: WindowSpec, from: Date): { opens: Date; closes: Date } | null {
	let t = Math.floor(from.getTime() / MINUTE) * MINUTE;
	const wasOpen = openAt(w, new Date(t));
	// Inside a window now: the next one is after this one closes.
	let i = 0;
	if (wasOpen) while (openAt(w, new Date(t)) && i++ < HORIZON) t += MINUTE;
	for (; i < 2 * HORIZON; i++, t += MINUTE) {
		if (!openAt(w, new Date(t))) continue;
		const opens = new Date(t);
		while (openAt(w, new Date(t))) t += MINUTE;
		return { opens, closes: new Date(t) };
	}
	return null;
}

/** When the window open at `at` closes (null: it is not open then). */
export function closesAfter(w: WindowSpec, at: Date): Date | null {
	if (!openAt(w, at)) return null;
	let t = Math.floor(at.getTime() / MINUTE) * MINUTE;
	while (openAt(w, new Date(t))) t += MINUTE;
	return new Date(t);
}

/** "Skip the next window": the moment until which the window stays shut (the end of the current or next one). */
export function skipNextUntil(w: WindowSpec, from: Date): Date | null {
	return closesAfter(w, from) ?? nextWindow(w, from)?.closes ?? null;
}
