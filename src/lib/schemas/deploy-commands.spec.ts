import { describe, expect, it } from 'vitest';
import { createRoleSchema, updateRoleSchema } from './code-sync';

const step = (name: string, deadline_seconds?: number) => ({
	argv: ['/opt/shop/bin/deploy', name],
	...(deadline_seconds === undefined ? {} : { deadline_seconds })
});
const commands = {
	backup: step('backup'),
	pull: step('pull'),
	migrate: step('migrate', 1800),
	smoke: step('smoke'),
	switch: step('switch'),
	rollback: step('rollback')
};
const role = (extra: Record<string, unknown>) => ({
	name: 'shop',
	method: 'commands',
	path: '/opt/shop',
	health: { type: 'http', url: 'http://127.0.0.1:8080/health' },
	commands,
	...extra
});

/** Where a refusal points, as the API's `fields` would name it. */
function problems(result: { success: boolean; error?: { issues: { path: PropertyKey[]; message: string }[] } }) {
	return Object.fromEntries((result.error?.issues ?? []).map((i) => [i.path.join('.'), i.message]));
}

describe('a commands role at the boundary', () => {
	it('takes the five commands and a rollback, each with a deadline (defaults per command)', () => {
		const r = createRoleSchema.parse(role({}));
		expect(r.commands).toEqual({
			backup: { argv: ['/opt/shop/bin/deploy', 'backup'], deadline_seconds: 600 },
			pull: { argv: ['/opt/shop/bin/deploy', 'pull'], deadline_seconds: 300 },
			migrate: { argv: ['/opt/shop/bin/deploy', 'migrate'], deadline_seconds: 1800 },
			smoke: { argv: ['/opt/shop/bin/deploy', 'smoke'], deadline_seconds: 120 },
			switch: { argv: ['/opt/shop/bin/deploy', 'switch'], deadline_seconds: 60 },
			rollback: { argv: ['/opt/shop/bin/deploy', 'rollback'], deadline_seconds: 60 }
		});
		const { rollback: _rollback, ...noRollback } = commands;
		expect(createRoleSchema.parse(role({ commands: noRollback })).commands?.rollback).toBeUndefined();
	});

	it('refuses, naming the field: a missing command, an unknown one, a bad argv, a deadline past its step', () => {
		const { migrate: _migrate, ...noMigrate } = commands;
		expect(problems(createRoleSchema.safeParse(role({ commands: noMigrate })))).toHaveProperty('commands.migrate');
		expect(problems(createRoleSchema.safeParse(role({ commands: { ...commands, deploy: step('x') } })))).toEqual({
			commands: expect.stringMatching(/deploy/)
		});
		expect(
			problems(createRoleSchema.safeParse(role({ commands: { ...commands, smoke: { argv: ['-rf', '/'] } } })))
		).toEqual({ 'commands.smoke.argv': 'the program must not start with -' });
		expect(problems(createRoleSchema.safeParse(role({ commands: { ...commands, backup: { argv: [] } } })))).toEqual({
			'commands.backup.argv': 'is required'
		});
		expect(problems(createRoleSchema.safeParse(role({ commands: { ...commands, pull: step('pull', 301) } })))).toEqual({
			'commands.pull.deadline_seconds': 'must be 1 to 300'
		});
		expect(
			problems(createRoleSchema.safeParse(role({ commands: { ...commands, switch: step('switch', 61) } })))
		).toEqual({ 'commands.switch.deadline_seconds': 'must be 1 to 60' });
		expect(
			problems(createRoleSchema.safeParse(role({ commands: { ...commands, migrate: step('migrate', 0) } })))
		).toEqual({ 'commands.migrate.deadline_seconds': 'must be 1 to 3600' });
	});

	it('commands go with the commands method only', () => {
		expect(problems(createRoleSchema.safeParse(role({ commands: undefined })))).toEqual({
			commands: expect.stringMatching(/needs its commands/)
		});
		expect(problems(createRoleSchema.safeParse(role({ method: 'git' })))).toEqual({
			commands: expect.stringMatching(/only it has them/)
		});
		expect(problems(createRoleSchema.safeParse(role({ method: 'ftp' })))).toEqual({
			method: 'must be git, push or commands'
		});
		expect(updateRoleSchema.parse({ commands: null })).toEqual({ commands: null });
	});
});
