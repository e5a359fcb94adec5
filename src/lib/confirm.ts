import type { SubmitFunction } from '@sveltejs/kit';

/**
 * `use:enhance` for a destructive form: the browser asks first, and nothing is sent unless the operator agrees.
 * The form keeps its values afterwards (hidden ids, nothing typed to lose).
 */
export function confirmFirst(question: string): SubmitFunction {
	return ({ cancel }) => {
		if (!confirm(question)) cancel();
		return ({ update }) => update({ reset: false });
	};
}
