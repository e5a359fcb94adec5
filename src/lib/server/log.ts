import pino from 'pino';
import { config } from './config';

// JSON logs on stdout: one line per event, ready for journald or a log shipper.
export const log = pino({
	level: config().logLevel,
	base: { app: 'flotilla' },
	redact: ['password', '*.password', 'token', '*.token', 'authorization', '*.authorization']
});

/**
 * An error as it may be logged. Drizzle's query errors carry the statement's parameters (password hashes,
 * token hashes) in their message and in `params`; only the database's own error is kept from them.
 */
export function loggableError(err: unknown): { name: string; message: string; stack?: string; code?: string } {
	if (!(err instanceof Error)) return { name: 'NonError', message: String(err) };
	const fromQuery = 'params' in err && err.cause instanceof Error;
	const source = fromQuery ? (err.cause as Error & { code?: string }) : (err as Error & { code?: string });
	// The stack's frames only: its first lines repeat the message, parameters included.
	const frames = err.stack
		?.split('\n')
		.filter((line) => line.startsWith('    at '))
		.join('\n');
	return { name: source.name, message: source.message, stack: frames, code: source.code };
}
