import { createHash } from 'node:crypto';
import { fail, type RequestEvent } from '@sveltejs/kit';
import { actorOf } from '$lib/server/audit';
import { ServiceError } from '$lib/server/errors';
import { formError, readFormData } from '$lib/server/http/forms';
import { importInventory, inventoryText, parseRoleGroups, type ImportResult } from '$lib/server/inventory/import';
import { listCredentials } from '$lib/server/keys/credentials';
import type { Actions, PageServerLoad } from './$types';
import { refuseProblems } from '$lib/server/http/api';
import { entryProblems } from '$lib/server/http/input';

export const load: PageServerLoad = async () => ({ credentials: await listCredentials() });

interface ImportForm {
	inventory: string;
	credential_id: string;
	role_groups: string;
	format: '' | 'ini' | 'yaml';
}

/**
 * The form: the inventory pasted, or uploaded as `file` (which wins when given; with JavaScript the page
 * copies a chosen file into the text box instead, so that what is previewed is what is shown), a
 * credential, which groups are roles, and the format (detected when blank).
 */
async function readImportForm(form: FormData): Promise<ImportForm> {
	refuseProblems(entryProblems(form.entries()));
	const text = (k: string) => {
		const v = form.get(k);
		return typeof v === 'string' ? v : '';
	};
	const file = form.get('file');
	const inventory =
		file instanceof File && file.size > 0 ? inventoryText(new Uint8Array(await file.arrayBuffer())) : text('inventory');
	const format = text('format');
	if (format !== '' && format !== 'ini' && format !== 'yaml') {
		throw new ServiceError('validation_failed', 'format: must be ini or yaml', { format: 'must be ini or yaml' });
	}
	const credential = text('credential_id').trim();
	if (!credential) throw new ServiceError('validation_failed', 'Choose a credential', { credential_id: 'is required' });
	if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(credential)) {
		throw new ServiceError('validation_failed', 'No such credential', { credential_id: 'no such credential' });
	}
	return { inventory, credential_id: credential, role_groups: text('role_groups').trim() || 'all', format };
}

/** What ties an import to the preview it confirms: the same text and options, or else a fresh preview. */
const previewToken = (f: ImportForm) =>
	createHash('sha256')
		.update(JSON.stringify([f.inventory, f.credential_id, f.role_groups, f.format]))
		.digest('hex');

const run = (event: RequestEvent, f: ImportForm, dryRun: boolean) =>
	importInventory(actorOf(event), {
		text: f.inventory,
		format: f.format || undefined,
		credentialId: f.credential_id,
		roleGroups: parseRoleGroups(f.role_groups),
		dryRun
	});

/** A preview (or an import's outcome) with the form's values, so that the page shows them again. */
function answer(f: ImportForm, result: ImportResult, extra: { message?: string; notice?: string } = {}) {
	const body = { ...f, result, token: result.errors.length ? null : previewToken(f), ...extra };
	return result.errors.length || extra.message ? fail(result.errors.length ? 400 : 409, body) : body;
}

export const actions: Actions = {
	preview: async (event) => {
		const read = await readFormData(event.request);
		if (!read.ok) return read.failure;
		const form = read.form;
		try {
			const f = await readImportForm(form);
			return answer(f, await run(event, f, true));
		} catch (err) {
			return formError(err, form);
		}
	},

	import: async (event) => {
		const read = await readFormData(event.request);
		if (!read.ok) return read.failure;
		const form = read.form;
		try {
			const f = await readImportForm(form);
			if (form.get('token') !== previewToken(f)) {
				// Changed (or never previewed): nothing is imported; the fresh preview is shown to confirm instead.
				return answer(f, await run(event, f, true), {
					message: 'The inventory or the options changed since the preview. Check this preview, then import.'
				});
			}
			const result = await run(event, f, false);
			const skipped = result.skipped ? `; skipped ${result.skipped} that exist already` : '';
			return answer(f, result, {
				notice: `Imported ${result.created} node${result.created === 1 ? '' : 's'}${skipped}. Test their connections to review their host keys.`
			});
		} catch (err) {
			return formError(err, form);
		}
	}
};
