import type { Action } from 'svelte/action';

/**
 * `use:scrollStop` on a box that scrolls (give it a name: a section's aria-label, or role="region" and one): while its
 * content overflows it, the box is a stop for Tab, so the keyboard can scroll it (WCAG 2.1.1, axe's
 * scrollable-region-focusable); while everything fits it is not, so Tab does not stop on something with nothing to do.
 */
export const scrollStop: Action<HTMLElement> = (el) => {
	const update = () => {
		if (el.scrollHeight > el.clientHeight || el.scrollWidth > el.clientWidth) el.tabIndex = 0;
		else el.removeAttribute('tabindex');
	};
	// The box changes size with the window; its content, with what is rendered in it.
	const observer = new ResizeObserver(update);
	observer.observe(el);
	for (const child of el.children) observer.observe(child);
	update();
	return { destroy: () => observer.disconnect() };
};
