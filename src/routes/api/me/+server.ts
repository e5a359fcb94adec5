import { json } from '@sveltejs/kit';
import { principalOf } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** Who the caller is and what it may do: handy for scripts checking their token. */
export const GET: RequestHandler = async (event) => {
	const p = principalOf(event);
	return json({ user: p.user, via: p.via, level: p.level, token_id: p.tokenId ?? null });
};
