import type { z } from 'zod';

/** Zod issues as `{field: why}`, the `fields` of the API's error shape (docs/api.md) and of form failures. */
export function fieldErrors(error: z.ZodError): Record<string, string> {
	const fields: Record<string, string> = {};
	for (const issue of error.issues) {
		const key = issue.path.length ? issue.path.join('.') : '_';
		fields[key] ??= issue.message;
	}
	return fields;
}

export function describeFieldErrors(fields: Record<string, string>): string {
	return Object.entries(fields)
		.map(([field, why]) => (field === '_' ? why : `${field}: ${why}`))
		.join('; ');
}
