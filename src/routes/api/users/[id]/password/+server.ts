import { resetPasswordSchema } from '$lib/schemas/auth';
import { uuidSchema } from '$lib/schemas/common';
import { resetPassword } from '$lib/server/auth/users';
import { actorOf } from '$lib/server/audit';
import { apiHandler, readJson, validate } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** An admin sets someone's password; all of that user's sessions end. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const id = validate(uuidSchema, event.params.id);
	const { password } = await readJson(event.request, resetPasswordSchema);
	await resetPassword(actorOf(event), id, password);
	return new Response(null, { status: 204 });
});
