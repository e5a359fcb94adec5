import { json } from '@sveltejs/kit';
import { inventoryImportQuerySchema } from '$lib/schemas/nodes';
import { actorOf } from '$lib/server/audit';
import { ServiceError } from '$lib/server/errors';
import { apiHandler, readQuery } from '$lib/server/http/api';
import { bodyTooLarge, isBodyTooLarge } from '$lib/server/http/limits';
import {
	importInventory,
	inventoryText,
	MAX_INVENTORY_BYTES,
	parseRoleGroups,
	tooLarge
} from '$lib/server/inventory/import';
import type { RequestHandler } from './$types';

/** The inventory is the body itself, as text, so that `curl --data-binary @hosts.ini` is all it takes. */
const textTypes = /^(text\/[\w.+-]+|application\/(x-)?yaml)\s*(;|$)/i;

export const POST: RequestHandler = apiHandler(async (event) => {
	const query = readQuery(event.url, inventoryImportQuerySchema);
	const type = event.request.headers.get('content-type') ?? '';
	if (!textTypes.test(type)) {
		throw new ServiceError(
			'unsupported_media_type',
			'Send the inventory itself as the body, as text: Content-Type text/plain (INI or YAML) or application/yaml'
		);
	}
	const text = inventoryText(await readLimited(event.request));
	const result = await importInventory(actorOf(event), {
		text,
		format: query.format,
		credentialId: query.credential_id,
		roleGroups: parseRoleGroups(query.role_groups),
		dryRun: query.dry_run
	});
	if (result.errors.length) {
		const first = result.errors.slice(0, 5).map((e) => `line ${e.line}: ${e.host ? `${e.host}: ` : ''}${e.message}`);
		const message = `The inventory has ${result.errors.length} error${result.errors.length === 1 ? '' : 's'}; nothing was imported. ${first.join('; ')}${result.errors.length > 5 ? '; …' : ''}`;
		// docs/api.md's error shape, with the whole plan beside it: every error by line, and what could be read.
		return json(
			{ error: { code: 'validation_failed', message, fields: { inventory: first[0]! } }, ...result },
			{ status: 400 }
		);
	}
	return json(result, { status: query.dry_run || result.created === 0 ? 200 : 201 });
});

/** The body, refused as soon as it grows past the limit (whether or not a Content-Length announced it). */
async function readLimited(request: Request): Promise<Uint8Array> {
	const announced = Number(request.headers.get('content-length') ?? 0);
	if (announced > MAX_INVENTORY_BYTES) throw tooLarge(announced);
	if (!request.body) return new Uint8Array();
	const chunks: Uint8Array[] = [];
	let size = 0;
	const reader = request.body.getReader();
	for (;;) {
		const { done, value } = await reader.read().catch((err: unknown) => {
			throw isBodyTooLarge(err) ? bodyTooLarge() : err;
		});
		if (done) break;
		size += value.byteLength;
		if (size > MAX_INVENTORY_BYTES) {
			await reader.cancel();
			throw tooLarge(size);
		}
		chunks.push(value);
	}
	const out = new Uint8Array(size);
	let at = 0;
	for (const c of chunks) {
		out.set(c, at);
		at += c.byteLength;
	}
	return out;
}
