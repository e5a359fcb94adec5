import type { SubmitFunction } from '@sveltejs/kit';
import { plural } from './format';

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

/**
 * `use:enhance` for deleting something with a past worth keeping (a node with run history): the operator types its
 * name, which the form sends as `confirm_name` for the server to compare; nothing is sent if they cancel.
 */
export function confirmByName(name: string, question: string): SubmitFunction {
	return ({ cancel, formData }) => {
		const typed = prompt(`${question}\n\nType ${name} to confirm.`);
		if (typed === null) cancel();
		else formData.set('confirm_name', typed);
		return ({ update }) => update({ reset: false });
	};
}

/**
 * What an operator types to delete several nodes of which some have run history (confirmByName's "name" for a
 * bulk delete); the server compares it (fleet/bulk.ts).
 */
export function bulkDeletePhrase(count: number): string {
	return `delete ${plural(count, 'node')}`;
}
