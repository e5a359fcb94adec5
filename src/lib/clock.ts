/**
 * Wall-clock time in a time zone, and the schedule's cron expressions, with nothing but Intl: pure functions,
 * tested across time zones and daylight-saving changes (docs/system-updates.md, "Schedule and windows").
 */

export interface LocalTime {
	year: number;
	month: number;
	day: number;
	/** 0 = Sunday … 6 = Saturday, as cron and the windows count them. */
	weekday: number;
	hour: number;
	minute: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();
const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

function formatter(timeZone: string): Intl.DateTimeFormat {
	let f = formatters.get(timeZone);
	if (!f) {
		f = new Intl.DateTimeFormat('en-US', {
			timeZone,
			hourCycle: 'h23',
			year: 'numeric',
			month: 'numeric',
			day: 'numeric',
			weekday: 'short',
			hour: 'numeric',
			minute: 'numeric'
		});
		formatters.set(timeZone, f);
	}
	return f;
}

export function localTime(at: Date, timeZone: string): LocalTime {
	const parts = Object.fromEntries(
		formatter(timeZone)
			.formatToParts(at)
			.map((p) => [p.type, p.value])
	);
	return {
		year: Number(parts.year),
		month: Number(parts.month),
		day: Number(parts.day),
		weekday: WEEKDAYS.indexOf(parts.weekday!),
		hour: Number(parts.hour),
		minute: Number(parts.minute)
	};
}

export interface Cron {
	minute: Set<number>;
	hour: Set<number>;
	day: Set<number>;
	month: Set<number>;
	weekday: Set<number>;
	/** Day of month and day of week both restricted: either matches (cron's rule). */
	eitherDay: boolean;
}

const FIELDS: [keyof Omit<Cron, 'eitherDay'>, number, number][] = [
	['minute', 0, 59],
	['hour', 0, 23],
	['day', 1, 31],
	['month', 1, 12],
	['weekday', 0, 7]
];

/** Parses a five-field cron expression (numbers, `*`, ranges, lists, steps); throws a message saying what is wrong. */
export function parseCron(expression: string): Cron {
	const fields = expression.trim().split(/\s+/);
	if (fields.length !== 5) throw new Error('must have five fields: minute hour day month weekday');
	const out = {} as Cron;
	fields.forEach((text, i) => {
		const [name, min, max] = FIELDS[i]!;
		const values = new Set<number>();
		for (const part of text.split(',')) {
			const m = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(part);
			if (!m) throw new Error(`${name}: '${part}' is not a number, range, list or step`);
			const from = m[1] === '*' ? min : Number(m[2]);
			const to = m[1] === '*' ? max : m[3] !== undefined ? Number(m[3]) : m[4] ? max : from;
			const step = m[4] ? Number(m[4]) : 1;
			if (from < min || to > max || from > to || step < 1)
				throw new Error(`${name}: '${part}' is outside ${min}-${max}`);
			for (let v = from; v <= to; v += step) values.add(name === 'weekday' && v === 7 ? 0 : v);
		}
		out[name] = values;
	});
	out.eitherDay = fields[2] !== '*' && fields[4] !== '*';
	return out;
}

export function cronMatches(cron: Cron, t: LocalTime): boolean {
	if (!cron.minute.has(t.minute) || !cron.hour.has(t.hour) || !cron.month.has(t.month)) return false;
	const day = cron.day.has(t.day);
	const weekday = cron.weekday.has(t.weekday);
	return cron.eitherDay ? day || weekday : day && weekday;
}

const MINUTE = 60_000;

/**
 * The last minute in (`after`, `until`] at which the cron fires in `timeZone`, or null. Looks back at most two
 * days: a console down for longer fires once, not once per missed day. A wall-clock minute that a
 * daylight-saving change skips never fires; one it repeats fires on its first occurrence only.
 */
export function lastFiring(cron: Cron, timeZone: string, after: Date, until: Date): Date | null {
	const start = Math.max(after.getTime(), until.getTime() - 2 * 24 * 60 * MINUTE);
	let t = Math.floor(until.getTime() / MINUTE) * MINUTE;
	for (; t > start; t -= MINUTE) {
		const local = localTime(new Date(t), timeZone);
		if (!cronMatches(cron, local)) continue;
		// The same wall-clock minute an hour earlier (a repeated hour after clocks go back): the first one fired.
		const before = localTime(new Date(t - 60 * MINUTE), timeZone);
		if (before.hour === local.hour && before.minute === local.minute && before.day === local.day) continue;
		return new Date(t);
	}
	return null;
}

/** How far `timeZone`'s wall clock is ahead of UTC at `t` (ms; whole minutes, as zones' offsets are). */
function offsetAt(t: number, timeZone: string): number {
	const l = localTime(new Date(t), timeZone);
	return Date.UTC(l.year, l.month - 1, l.day, l.hour, l.minute) - Math.floor(t / MINUTE) * MINUTE;
}

/**
 * The instant a wall-clock `YYYY-MM-DDTHH:MM` (a datetime-local input's value, seconds optional) names in
 * `timeZone`, or null when the text is not such a time. The zone's offset is taken at a first guess, then at the
 * instant that gives: a time a daylight-saving change skips comes out an hour later, a repeated one is one of
 * its two instants.
 */
export function instantOfWallClock(text: string, timeZone: string): Date | null {
	const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(text);
	if (!m) return null;
	const [year, month, day, hour, minute, second] = m.slice(1).map((v) => Number(v ?? 0)) as number[];
	const wall = Date.UTC(year!, month! - 1, day!, hour!, minute!, second!);
	const check = new Date(wall);
	// Date.UTC rolls 31 April over to 1 May: a day or time outside its range is no time at all.
	if (check.getUTCMonth() !== month! - 1 || check.getUTCDate() !== day! || hour! > 23 || minute! > 59 || second! > 59) {
		return null;
	}
	let t = wall - offsetAt(wall, timeZone);
	t = wall - offsetAt(t, timeZone);
	return new Date(t);
}
