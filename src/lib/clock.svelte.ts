import { createSubscriber } from 'svelte/reactivity';

/**
 * The time now, as a value the page reacts to: one clock per interval, ticking only while something on
 * screen reads it. Outside a reactive context (the server render, a handler), it is simply `Date.now()`.
 */
const clocks = new Map<number, () => number>();

export function now(everyMs = 1000): number {
	let read = clocks.get(everyMs);
	if (!read) {
		let value = Date.now();
		let ticking = false;
		const subscribe = createSubscriber((update) => {
			ticking = true;
			value = Date.now();
			const timer = setInterval(() => {
				value = Date.now();
				update();
			}, everyMs);
			return () => {
				ticking = false;
				clearInterval(timer);
			};
		});
		read = () => {
			subscribe();
			return ticking ? value : Date.now();
		};
		clocks.set(everyMs, read);
	}
	return read();
}
