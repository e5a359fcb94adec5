import pino from 'pino';

// JSON logs on stdout: one line per event, ready for journald or a log shipper.
export const log = pino({
	level: process.env.FLOTILLA_LOG_LEVEL || 'info',
	base: { app: 'flotilla' },
	redact: ['password', '*.password', 'token', '*.token', 'authorization', '*.authorization']
});
