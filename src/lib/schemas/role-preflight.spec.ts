import { describe, expect, it } from 'vitest';
import { createRoleSchema, updateRoleSchema } from './code-sync';

const KEY = 'AAAAC3NzaC1lZDI1NTE5AAAAICAH1XympOydrhRY2E7DJKThvqgyKBnIcklsReC8jc11';
const role = (extra: Record<string, unknown>) => ({
	name: 'backend',
	path: '/opt/backend',
	units: ['backend.service'],
	...extra
});

/** Where a refusal points, as the API's `fields` would name it. */
function problems(result: { success: boolean; error?: { issues: { path: PropertyKey[]; message: string }[] } }) {
	return Object.fromEntries((result.error?.issues ?? []).map((i) => [i.path.join('.'), i.message]));
}

describe('signatures, pre-flight and quiesce at the boundary', () => {
	it('takes them all, with their defaults, and leaves them null when not given', () => {
		expect(createRoleSchema.parse(role({}))).toMatchObject({
			signatures: null,
			readiness_check: null,
			snapshot: null,
			quiesce: null
		});
		const r = createRoleSchema.parse(
			role({
				signatures: { allowed_signers: [`deploy@example.com ssh-ed25519 ${KEY} laptop`] },
				readiness_check: { argv: ['./ready.sh'] },
				snapshot: { data_paths: ['/var/lib/backend'] },
				quiesce: { quiesce: { argv: ['./pause.sh'] }, resume: { argv: ['./resume.sh'], deadline_seconds: '5' } }
			})
		);
		expect(r.readiness_check).toEqual({ argv: ['./ready.sh'], deadline_seconds: 30 });
		expect(r.snapshot).toEqual({
			data_paths: ['/var/lib/backend'],
			keep: 3,
			deadline_seconds: 600,
			restore_command: []
		});
		expect(r.quiesce).toEqual({
			quiesce: { argv: ['./pause.sh'], deadline_seconds: 60 },
			resume: { argv: ['./resume.sh'], deadline_seconds: 5 }
		});
	});

	it('refuses each bad value naming its field', () => {
		const cases: [Record<string, unknown>, string][] = [
			[{ signatures: { allowed_signers: [] } }, 'signatures.allowed_signers'],
			[{ signatures: { allowed_signers: ['deploy ssh-ed25519'] } }, 'signatures.allowed_signers.0'],
			// The key's own bytes say ed25519: a line claiming rsa for it is refused.
			[{ signatures: { allowed_signers: [`deploy ssh-rsa ${KEY}`] } }, 'signatures.allowed_signers.0'],
			[{ signatures: { allowed_signers: [`deploy ssh-ed25519 ${KEY}\nx`] } }, 'signatures.allowed_signers.0'],
			[{ signatures: { allowed_signers: [`valid-after="2020" ssh-ed25519 ${KEY}`] } }, 'signatures.allowed_signers.0'],
			[{ signatures: { allowed_signers: ['x'], extra: 1 } }, 'signatures'],
			[{ readiness_check: { argv: [] } }, 'readiness_check.argv'],
			[{ readiness_check: { argv: ['-rf'] } }, 'readiness_check.argv'],
			[{ readiness_check: { argv: ['./ready.sh'], deadline_seconds: 301 } }, 'readiness_check.deadline_seconds'],
			[{ snapshot: { keep: 0 } }, 'snapshot.keep'],
			[{ snapshot: { data_paths: ['/'] } }, 'snapshot.data_paths.0'],
			[{ snapshot: { data_paths: ['var/lib'] } }, 'snapshot.data_paths.0'],
			[{ snapshot: { restore_command: 'tar -x' } }, 'snapshot.restore_command'],
			[{ quiesce: { quiesce: { argv: ['./pause.sh'] } } }, 'quiesce.resume'],
			[
				{ quiesce: { quiesce: { argv: ['./p'], deadline_seconds: 0 }, resume: { argv: ['./r'] } } },
				'quiesce.quiesce.deadline_seconds'
			],
			[{ method: 'commands', signatures: { allowed_signers: [`deploy ssh-ed25519 ${KEY}`] } }, 'signatures']
		];
		for (const [extra, field] of cases) {
			const found = problems(createRoleSchema.safeParse(role(extra)));
			expect(Object.keys(found), JSON.stringify(extra)).toContain(field);
		}
	});

	it('PATCH sets or clears each one alone', () => {
		expect(updateRoleSchema.parse({ snapshot: null })).toEqual({ snapshot: null });
		expect(problems(updateRoleSchema.safeParse({ quiesce: { quiesce: {}, resume: {} } }))).toHaveProperty(
			'quiesce.quiesce.argv'
		);
		expect(problems(updateRoleSchema.safeParse({ signatures: 'yes' }))).toHaveProperty('signatures');
	});
});
