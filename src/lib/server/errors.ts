/**
 * A failure a caller can act on, raised by services and turned into a 4xx by both JSON endpoints and
 * form actions. Anything else that escapes is a bug and becomes a logged 500.
 */
export type ErrorCode =
	| 'validation_failed'
	| 'invalid_json'
	| 'unsupported_media_type'
	| 'unauthenticated'
	| 'forbidden'
	| 'not_found'
	| 'method_not_allowed'
	| 'conflict'
	| 'payload_too_large'
	| 'uri_too_long'
	| 'too_many_requests'
	| 'internal_error';

const statusOf: Record<ErrorCode, number> = {
	validation_failed: 400,
	invalid_json: 400,
	unsupported_media_type: 415,
	unauthenticated: 401,
	forbidden: 403,
	not_found: 404,
	method_not_allowed: 405,
	conflict: 409,
	payload_too_large: 413,
	uri_too_long: 414,
	too_many_requests: 429,
	internal_error: 500
};

export class ServiceError extends Error {
	readonly status: number;
	constructor(
		readonly code: ErrorCode,
		message: string,
		readonly fields: Record<string, string> = {}
	) {
		super(message);
		this.status = statusOf[code];
	}
}

export const notFound = (what: string) => new ServiceError('not_found', `${what} not found`);
export const conflict = (message: string, fields?: Record<string, string>) =>
	new ServiceError('conflict', message, fields);
