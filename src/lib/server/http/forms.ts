import { fail, type ActionFailure } from '@sveltejs/kit';
import type { z } from 'zod';
import { describeFieldErrors, fieldErrors } from '$lib/schemas/errors';
import { ServiceError } from '$lib/server/errors';
import { entryProblems } from './input';
import { bodyTooLarge, isBodyTooLarge } from './limits';

export interface FormFailure {
	message: string;
	fields: Record<string, string>;
	values: Record<string, string>;
}

/** A form failure with a message only (no particular field to blame). */
export function failWith(status: number, message: string, values: Record<string, string> = {}) {
	return fail(status, { message, fields: {} as Record<string, string>, values } satisfies FormFailure);
}

/** Form values to echo back (on failure, or to a form that stays on the page); secrets are never echoed. */
export function echo(form: FormData): Record<string, string> {
	const values: Record<string, string> = {};
	for (const [k, v] of form) {
		if (typeof v === 'string' && !/password|confirm|token|secret/i.test(k)) values[k] = v;
	}
	return values;
}

export type FormParse<T> = { ok: true; data: T; form: FormData } | { ok: false; failure: ActionFailure<FormFailure> };

export type FormRead = { ok: true; form: FormData } | { ok: false; failure: ActionFailure<FormFailure> };

/** The posted form, or why it cannot be read: past the body limit (413), or not a form at all (415). */
export async function readFormData(request: Request): Promise<FormRead> {
	try {
		return { ok: true, form: await request.formData() };
	} catch (err) {
		if (isBodyTooLarge(err)) return { ok: false, failure: failWith(413, bodyTooLarge().message) };
		// SvelteKit lets text/plain and boundary-less multipart through to actions; neither parses as a form.
		return {
			ok: false,
			failure: failWith(415, 'Send the form as application/x-www-form-urlencoded or multipart/form-data')
		};
	}
}

/**
 * Parses a form post with the same zod schema the JSON endpoint uses. Repeated fields (checkbox groups)
 * become arrays, so `scopes=read&scopes=operate` reads as `["read", "operate"]`.
 */
export async function parseForm<S extends z.ZodType>(
	request: Request,
	schema: S,
	shape: (form: FormData) => unknown = defaultShape
): Promise<FormParse<z.infer<S>>> {
	const read = await readFormData(request);
	if (!read.ok) return read;
	const form = read.form;
	const problems = entryProblems(form.entries());
	if (Object.keys(problems).length) {
		// Not echoed back: what was refused is what must not reach a page or the database.
		return { ok: false, failure: fail(400, { message: describeFieldErrors(problems), fields: problems, values: {} }) };
	}
	const input = shape(form);
	const parsed = schema.safeParse(input);
	if (parsed.success) return { ok: true, data: parsed.data, form };
	const fields = withItemErrors(fieldErrors(parsed.error), input);
	return { ok: false, failure: fail(400, { message: describeFieldErrors(fields), fields, values: echo(form) }) };
}

/**
 * A list typed into one field (`roles=backend, Bad Role`) is refused item by item (`roles.1`); the field itself
 * shows the first bad item, naming it, so the reason sits next to what the operator typed.
 */
function withItemErrors(fields: Record<string, string>, input: unknown): Record<string, string> {
	const out = { ...fields };
	for (const [key, why] of Object.entries(fields)) {
		const item = /^([^.]+)\.(\d+)$/.exec(key);
		if (!item) continue;
		const list = (input as Record<string, unknown> | null)?.[item[1]!];
		const value = Array.isArray(list) ? list[Number(item[2])] : undefined;
		out[item[1]!] ??= typeof value === 'string' ? `“${value}” ${why}` : `item ${Number(item[2]) + 1} ${why}`;
	}
	return out;
}

function defaultShape(form: FormData): Record<string, unknown> {
	const out: Record<string, unknown> = {};
	for (const key of new Set(form.keys())) {
		const all = form.getAll(key).filter((v): v is string => typeof v === 'string');
		out[key] = all.length > 1 ? all : all[0];
	}
	return out;
}

/** A service's refusal as a form failure; anything unexpected propagates as a 500. */
export function formError(err: unknown, form?: FormData): ActionFailure<FormFailure> {
	if (err instanceof ServiceError) {
		return fail(err.status, { message: err.message, fields: err.fields, values: form ? echo(form) : {} });
	}
	throw err;
}
