import { json } from '@sveltejs/kit';
import { z } from 'zod';
import { uuidSchema } from '$lib/schemas/common';
import { apiHandler, validate } from '$lib/server/http/api';
import { presentKeyRotation } from '$lib/server/keys/present';
import { getKeyRotation } from '$lib/server/keys/rotation';
import type { RequestHandler } from './$types';

const paramsSchema = z.object({ id: uuidSchema });

/** One key rotation: its phases and their runs, each node, the abort and its cleanup (docs/ssh-key-rotation.md). */
export const GET: RequestHandler = apiHandler(async (event) =>
	json(presentKeyRotation(await getKeyRotation(validate(paramsSchema, event.params).id)))
);
