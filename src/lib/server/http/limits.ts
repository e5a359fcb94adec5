import { config } from '$lib/server/config';
import { ServiceError } from '$lib/server/errors';

/**
 * The longest request target (path and query) the console reads. Filters and cursors fit in far less; Node
 * itself gives up on a request head past its own limit (16 KiB unless started with a larger
 * `--max-http-header-size`, as `npm run serve` and the quick start do), and answers without a body.
 */
export const MAX_URL_BYTES = 8 * 1024;

/** adapter-node stops reading a body past BODY_SIZE_LIMIT, and the read fails with an error whose status is 413. */
export function isBodyTooLarge(err: unknown): boolean {
	return typeof err === 'object' && err !== null && (err as { status?: unknown }).status === 413;
}

export function bodyTooLarge(): ServiceError {
	const limit = config().bodyLimitBytes;
	return new ServiceError(
		'payload_too_large',
		`The body is larger than the console accepts: at most ${limit} bytes (BODY_SIZE_LIMIT)`,
		{ body: `is larger than ${limit} bytes` }
	);
}

export function urlTooLong(length: number): ServiceError {
	return new ServiceError(
		'uri_too_long',
		`The request URL is ${length} bytes long; at most ${MAX_URL_BYTES} bytes are read`,
		{ url: `is longer than ${MAX_URL_BYTES} bytes` }
	);
}
