/** Shapes and formatting shared by the Code Sync pages (browser and server). */

/** A commit as operators read it in tables: the first 7 characters, like `git log --oneline`. */
export const shortCommit = (c: string | null | undefined) => (c ? c.slice(0, 7) : '—');

/** "42 s ago", "3 min ago", "5 h ago", "2 d ago"; "—" for never. */
export function since(d: Date | string | null | undefined, now = Date.now()): string {
	if (!d) return '—';
	const s = Math.max(0, Math.round((now - new Date(d).getTime()) / 1000));
	if (s < 60) return `${s} s ago`;
	if (s < 3600) return `${Math.round(s / 60)} min ago`;
	if (s < 172_800) return `${Math.round(s / 3600)} h ago`;
	return `${Math.round(s / 86_400)} d ago`;
}

/** The scope of an update, as the trigger endpoint takes it. */
export interface ScopeView {
	nodes?: string[];
	roles?: string[];
	labels?: string[];
}

/**
 * An Update All plan as the confirm dialog shows it. A plan for 10,000 nodes is cut to its first rows for
 * the page; the counts and the targets (which the confirmation pins) are always whole.
 */
export interface PlanView {
	title: string;
	scope: ScopeView;
	targets: Record<string, string>;
	/**
	 * Per role: the commit it goes to, how many nodes move to it, whether it must be signed to deploy, and why
	 * the console knows the commit cannot be deployed (null: nothing known against it).
	 */
	roles: { role: string; to: string; nodes: number; signed: boolean; unknown: string | null }[];
	phases: { phase: number; label: string; nodes: number; critical: boolean }[];
	concurrency: number;
	nodes: {
		id: string;
		name: string;
		address: string;
		control_plane: boolean;
		phase: number;
		roles: { role: string; from: string | null; to: string }[];
		warning: string | null;
	}[];
	nodesTotal: number;
	/** Excluded for a reason other than being up to date. */
	excluded: { id: string; name: string; reason: string }[];
	excludedTotal: number;
	upToDate: number;
	warnings: string[];
}

/** How many node rows and excluded rows a plan brings to the page. */
export const PLAN_ROWS = 200;
