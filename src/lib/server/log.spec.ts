import { DrizzleQueryError } from 'drizzle-orm/errors';
import { describe, expect, it } from 'vitest';
import { loggableError } from './log';

describe('loggableError', () => {
	it('keeps the database error but drops the query parameters', () => {
		const cause = Object.assign(new Error('duplicate key value violates unique constraint'), { code: '23505' });
		const err = new DrizzleQueryError(
			'insert into users values ($1, $2)',
			['alice', '$argon2id$v=19$secret-hash'],
			cause
		);
		const logged = loggableError(err);
		expect(logged).toMatchObject({ message: 'duplicate key value violates unique constraint', code: '23505' });
		expect(JSON.stringify(logged)).not.toContain('secret-hash');
	});

	it('passes ordinary errors through', () => {
		expect(loggableError(new TypeError('boom'))).toMatchObject({ name: 'TypeError', message: 'boom' });
		expect(loggableError('text')).toEqual({ name: 'NonError', message: 'text' });
	});
});
