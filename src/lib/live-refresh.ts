import { invalidate, invalidateAll } from '$app/navigation';
import { navigating } from '$app/state';
import type { StreamEvent } from './run-live.svelte';

export interface FollowOptions {
	/** Event types on /api/events that change what the page shows. */
	types: string[];
	/** The page load's `depends()` key, reloaded on those events; without one, every load reruns. */
	dependency?: `app:${string}`;
	/** Events of those types that do not concern this page. */
	accept?: (e: StreamEvent & { node_id?: string | null }) => boolean;
	/** At most one reload per this many ms, however busy the fleet is. */
	gapMs?: number;
	/** While true (e.g. a confirm dialog is open), reloads wait. */
	paused?: () => boolean;
	onStatus?: (live: boolean) => void;
}

/**
 * Reloads a page's data when the fleet-wide stream says it changed. A reload never runs while a navigation
 * is under way: SvelteKit's invalidate() supersedes a navigation in flight, so a reload landing just after
 * a form redirected (Update All → its run) would keep the operator on the old page. The page navigated to
 * loads fresh data anyway. Returns the cleanup for `$effect`.
 */
export function followEvents(opts: FollowOptions): () => void {
	const gap = opts.gapMs ?? 1000;
	const source = new EventSource('/api/events');
	let timer: ReturnType<typeof setTimeout> | undefined;
	let last = 0;
	const fire = () => {
		timer = undefined;
		if (navigating.to) return;
		if (opts.paused?.()) {
			timer = setTimeout(fire, gap);
			return;
		}
		last = Date.now();
		void (opts.dependency ? invalidate(opts.dependency) : invalidateAll());
	};
	const schedule = () => {
		timer ??= setTimeout(fire, Math.max(250, last + gap - Date.now()));
	};
	const onEvent = (m: MessageEvent<string>) => {
		if (opts.accept && !opts.accept(JSON.parse(m.data))) return;
		schedule();
	};
	for (const type of opts.types) source.addEventListener(type, onEvent);
	let opened = false;
	source.onopen = () => {
		opts.onStatus?.(true);
		// The stream starts when it opens, after the page's data was loaded: whatever happened in between (a task
		// ending within the moment its rollout's page took to load) would never show. One reload once it is open
		// closes that gap. Reconnects need none: the browser resumes with Last-Event-ID, and the server from there.
		if (!opened) schedule();
		opened = true;
	};
	source.onerror = () => opts.onStatus?.(source.readyState === EventSource.OPEN);
	return () => {
		source.close();
		clearTimeout(timer);
	};
}
