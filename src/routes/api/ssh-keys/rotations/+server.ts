import { json } from '@sveltejs/kit';
import { apiHandler } from '$lib/server/http/api';
import { presentKeyRotation } from '$lib/server/keys/present';
import { listKeyRotations } from '$lib/server/keys/rotation';
import type { RequestHandler } from './$types';

const ROTATIONS_LISTED = 50;

/** The most recent key rotations, newest first (docs/ssh-key-rotation.md, "API"). */
export const GET: RequestHandler = apiHandler(async () =>
	json({ items: (await listKeyRotations(ROTATIONS_LISTED)).map(presentKeyRotation) })
);
