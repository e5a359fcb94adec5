import { describe, expect, it } from 'vitest';
import { createRoleSchema, updateRoleSchema } from './code-sync';

const KEY = 'AAAAC3NzaC1lZDI1NTE5AAAAICAH1XympOydrhRY2E7DJKThvqgyKBnIcklsReC8jc11';
/** An ed25519 OpenPGP public key as `gpg --armor --export` writes it, and its secret key's body. */
const PGP = `-----BEGIN PGP PUBLIC KEY BLOCK-----

mDMEaw6Y6hYJKwYBBAHaRw8BAQdATS1alI0r9+8OiRmNqeTHq5yEDMO62zLudt+S
lrxNxhm0HEV4YW1wbGUgPGRlcGxveUBleGFtcGxlLmNvbT6IkAQTFggAOBYhBAdB
tVC92Fd8x9cBPwZ3eoxj7i7ZBQJrDpjqAhsDBQsJCAcCBhUKCQgLAgQWAgMBAh4B
AheAAAoJEAZ3eoxj7i7ZMpAA/RrfpcPtc0krIVWZsLMdBT6uQhEjwn3wPlGQFARe
cVw3AP45WTE83PgUZEfb8FkW2Hkb1ZHqlge70Ic4qC4TYOnGBQ==
=UAH+
-----END PGP PUBLIC KEY BLOCK-----`;
const SECRET_BODY = `lFgEaw6Y6hYJKwYBBAHaRw8BAQdATS1alI0r9+8OiRmNqeTHq5yEDMO62zLudt+S
lrxNxhkAAP4tMPhTGgkKwTm7vrYoJ1t938JJq+DsYdZCYf5CH7rlahDGtBxFeGFt
cGxlIDxkZXBsb3lAZXhhbXBsZS5jb20+iJAEExYIADgWIQQHQbVQvdhXfMfXAT8G
d3qMY+4u2QUCaw6Y6gIbAwULCQgHAgYVCgkICwIEFgIDAQIeAQIXgAAKCRAGd3qM
Y+4u2TKQAP0a36XD7XNJKyFVmbCzHQU+rkIRI8J98D5RkBQEXnFcNwD+OVkxPNz4
FGRH2/BZFth5G9WR6pYHu9CHOKguE2DpxgU=`;
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

	it('takes armored OpenPGP public keys, alone or beside SSH signers, and refuses what is not one, naming the key', () => {
		expect(createRoleSchema.parse(role({ signatures: { openpgp_keys: [PGP] } })).signatures).toEqual({
			openpgp_keys: [PGP]
		});
		const both = { allowed_signers: [`deploy ssh-ed25519 ${KEY}`], openpgp_keys: [PGP] };
		expect(createRoleSchema.parse(role({ signatures: both })).signatures).toEqual(both);
		const lines = PGP.split('\n');
		const body = lines.slice(2, -2);
		const armor = (b: string[], checksum?: string) =>
			[
				'-----BEGIN PGP PUBLIC KEY BLOCK-----',
				'',
				...b,
				...(checksum ? [checksum] : []),
				'-----END PGP PUBLIC KEY BLOCK-----'
			].join('\n');
		const cases: [string, RegExp][] = [
			['deploy@example.com', /must be one armored OpenPGP public key/],
			[`${PGP}\n${PGP}`, /must be one armored OpenPGP public key/],
			// One character changed: the checksum says so.
			[PGP.replace(lines[2]!, `${lines[2]![0] === 'm' ? 'n' : 'm'}${lines[2]!.slice(1)}`), /checksum does not match/],
			// Cut short, without the checksum that would give it away: its packets do.
			[armor(body.slice(0, 2)), /packets are broken/],
			[
				`-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n${SECRET_BODY}\n-----END PGP PRIVATE KEY BLOCK-----`,
				/is a private key/
			],
			// A secret key armored as a public one.
			[armor(SECRET_BODY.split('\n')), /holds a secret key/]
		];
		for (const [key, message] of cases) {
			const found = problems(createRoleSchema.safeParse(role({ signatures: { openpgp_keys: [PGP, key] } })));
			expect(found, key).toEqual({ 'signatures.openpgp_keys.1': expect.stringMatching(message) });
		}
		expect(problems(createRoleSchema.safeParse(role({ signatures: { openpgp_keys: [] } })))).toEqual({
			'signatures.allowed_signers': 'needs at least one allowed signer or OpenPGP key'
		});
	});

	it('PATCH sets or clears each one alone', () => {
		expect(updateRoleSchema.parse({ snapshot: null })).toEqual({ snapshot: null });
		expect(problems(updateRoleSchema.safeParse({ quiesce: { quiesce: {}, resume: {} } }))).toHaveProperty(
			'quiesce.quiesce.argv'
		);
		expect(problems(updateRoleSchema.safeParse({ signatures: 'yes' }))).toHaveProperty('signatures');
	});
});
