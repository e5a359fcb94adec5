import { json } from '@sveltejs/kit';
import { config } from '$lib/server/config';
import { databaseKind } from '$lib/server/db';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = async () =>
	json({ name: 'flotilla', version: config().version, node: process.versions.node, database: databaseKind() });
