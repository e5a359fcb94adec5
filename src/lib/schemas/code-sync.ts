import { z } from 'zod';
import { fromText, uuidSchema, wrongType } from './common';
import { nodeNameSchema, roleNameSchema } from './nodes';
import { absolutePathSchema, branchSchema, commitSchema, gitRefSchema, unitNameSchema } from './remote';

/**
 * Code Sync's inputs: role definitions, commit notifications, mark-synced and Update All. Everything here that
 * reaches a node's command line is validated for the program that reads it, then quoted by the `sh` tag.
 */

// eslint-disable-next-line no-control-regex -- control characters are what it finds
const controlChars = /[\u0000-\u001f\u007f]/;

/**
 * A program and its arguments (install, restart, health commands). It is run as argv, every argument
 * quoted, never through a shell: an admin who needs a pipeline writes a script and names it here.
 */
export const argvSchema = z
	.array(
		z
			.string(wrongType('arguments must be strings'))
			.min(1, 'arguments must not be empty')
			.max(1024, 'arguments are at most 1024 characters')
			.refine((v) => !controlChars.test(v), 'arguments must not contain control characters'),
		wrongType('must be a list of arguments, e.g. ["./install.sh", "--prod"]')
	)
	.max(32, 'at most 32 arguments')
	.refine((argv) => argv.length === 0 || !argv[0]!.startsWith('-'), 'the program must not start with -');

const commandArgv = argvSchema.refine((a) => a.length > 0, 'is required');

/** A URL fetched on the node itself (usually 127.0.0.1) with curl. */
export const healthUrlSchema = z
	.string(wrongType('is required'))
	.max(2048, 'must be at most 2048 characters')
	.refine((v) => {
		try {
			const u = new URL(v);
			return (u.protocol === 'http:' || u.protocol === 'https:') && !/\s/.test(v) && !controlChars.test(v);
		} catch {
			return false;
		}
	}, 'must be an http:// or https:// URL');

export const healthCheckSchema = z.discriminatedUnion(
	'type',
	[
		// As strict as the role around them: an unknown key is refused, not dropped.
		z.object({ type: z.literal('units') }).strict(),
		z.object({ type: z.literal('command'), command: commandArgv }).strict(),
		z.object({ type: z.literal('http'), url: healthUrlSchema }).strict()
	],
	{ error: 'must be {type: "units"}, {type: "command", command: [...]} or {type: "http", url}' }
);

/** Which tags a role follows instead of its branch's newest commit: a glob of `*` and `?` (docs/code-sync.md). */
const followTagsSchema = z
	.string(wrongType('must be a glob such as v* or null'))
	.regex(/^[A-Za-z0-9._/+*?-]{1,64}$/, 'must be a glob such as v*: letters, digits, . _ / + - * ? (at most 64)');

/**
 * A command with its own deadline, run in the role's folder on the node: a `commands` role's steps, readiness,
 * quiesce and resume. `max` is the budget of the step it runs in.
 */
const timedCommandSchema = (max: number, fallback: number) =>
	z
		.object(
			{
				argv: commandArgv,
				deadline_seconds: fromText(
					z
						.number(wrongType('must be a number'))
						.int('must be a whole number')
						.min(1, `must be 1 to ${max}`)
						.max(max, `must be 1 to ${max}`)
				).default(fallback)
			},
			wrongType('must be {argv: [...], deadline_seconds}')
		)
		.strict();

/**
 * The commands of a `commands` role in the order they run, each with its deadline's default and most
 * (docs/releases.md, "The commands method"). Pull runs inside the fetch step and switch inside the switch step,
 * whose undo runs the rollback: their budgets are those steps'. The role form lists them from here too.
 */
export const deployCommandLimits = [
	{ name: 'backup', fallback: 600, max: 3600 },
	{ name: 'pull', fallback: 300, max: 300 },
	{ name: 'migrate', fallback: 600, max: 3600 },
	{ name: 'smoke', fallback: 120, max: 3600 },
	{ name: 'switch', fallback: 60, max: 60 },
	{ name: 'rollback', fallback: 60, max: 60 }
] as const;

const limitOf = (name: (typeof deployCommandLimits)[number]['name']) =>
	deployCommandLimits.find((l) => l.name === name)!;
const commandOf = (name: (typeof deployCommandLimits)[number]['name']) =>
	timedCommandSchema(limitOf(name).max, limitOf(name).fallback);

/** A `commands` role's update: backup, pull, migrate, smoke and switch are required, rollback is recommended. */
export const deployCommandsSchema = z
	.object(
		{
			backup: commandOf('backup'),
			pull: commandOf('pull'),
			migrate: commandOf('migrate'),
			smoke: commandOf('smoke'),
			switch: commandOf('switch'),
			rollback: commandOf('rollback').optional()
		},
		wrongType('must be an object of commands: backup, pull, migrate, smoke, switch and rollback')
	)
	.strict();

/**
 * One line of git's allowed signers file (docs/code-sync.md, "Signed commits and tags"): `principal key-type
 * base64-key [comment]`. Options (namespaces=, valid-after=) are not accepted: a line is a key that may sign.
 * The key's own bytes must name the same type as the line, so a pasted half of a key is refused here, not
 * on the node.
 */
const SSH_KEY_TYPES = [
	'ssh-ed25519',
	'ssh-rsa',
	'ecdsa-sha2-nistp256',
	'ecdsa-sha2-nistp384',
	'ecdsa-sha2-nistp521',
	'sk-ssh-ed25519@openssh.com',
	'sk-ecdsa-sha2-nistp256@openssh.com'
];
const SIGNER_LINE = /^([A-Za-z0-9@._+*,-]{1,200}) (\S+) ([A-Za-z0-9+/]{20,8192}={0,2})( .{0,200})?$/;

/** Whether `blob` (base64) is an SSH public key of type `type`: a length-prefixed type string comes first. */
function keyBlobIs(type: string, blob: string): boolean {
	const bytes = Buffer.from(blob, 'base64');
	if (bytes.length < 4) return false;
	const length = bytes.readUInt32BE(0);
	return length === type.length && bytes.subarray(4, 4 + length).toString('latin1') === type;
}

export const allowedSignerSchema = z.string(wrongType('must be an allowed signer line')).refine((line) => {
	const m = SIGNER_LINE.exec(line);
	return !!m && !controlChars.test(line) && SSH_KEY_TYPES.includes(m[2]!) && keyBlobIs(m[2]!, m[3]!);
}, 'must be "principal key-type key [comment]", e.g. deploy@example.com ssh-ed25519 AAAA…');

/** OpenPGP's CRC-24 (RFC 4880 §6.1), the armor's `=XXXX` checksum line. */
function crc24(bytes: Uint8Array): number {
	let crc = 0xb704ce;
	for (const b of bytes) {
		crc ^= b << 16;
		for (let i = 0; i < 8; i++) {
			crc <<= 1;
			if (crc & 0x1000000) crc ^= 0x1864cfb;
		}
	}
	return crc & 0xffffff;
}

/**
 * The packets of an OpenPGP message as [tag, first body byte], or null when its framing is broken (a cut or
 * edited key). Partial body lengths never occur in a transferable public key, so they count as broken.
 */
function openpgpPackets(bytes: Buffer): [number, number | undefined][] | null {
	const packets: [number, number | undefined][] = [];
	let i = 0;
	while (i < bytes.length) {
		const head = bytes[i]!;
		if (!(head & 0x80)) return null;
		let tag: number;
		let length: number;
		let offset: number;
		if (i + 2 > bytes.length) return null;
		if (head & 0x40) {
			tag = head & 0x3f;
			const first = bytes[i + 1]!;
			if (first < 192) [length, offset] = [first, 2];
			else if (first < 224 && i + 3 <= bytes.length) [length, offset] = [((first - 192) << 8) + bytes[i + 2]! + 192, 3];
			else if (first === 255 && i + 6 <= bytes.length) [length, offset] = [bytes.readUInt32BE(i + 2), 6];
			else return null;
		} else {
			tag = (head >> 2) & 0x0f;
			const type = head & 0x03;
			if (type === 0) [length, offset] = [bytes[i + 1]!, 2];
			else if (type === 1 && i + 3 <= bytes.length) [length, offset] = [bytes.readUInt16BE(i + 1), 3];
			else if (type === 2 && i + 5 <= bytes.length) [length, offset] = [bytes.readUInt32BE(i + 1), 5];
			else return null;
		}
		if (i + offset + length > bytes.length) return null;
		packets.push([tag, bytes[i + offset]]);
		i += offset + length;
	}
	return packets;
}

const PUBLIC_ARMOR =
	/^-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n(?:[!-9;-~]+: [^\r\n]*\r?\n)*\r?\n([A-Za-z0-9+/=\r\n]+?)\r?\n(?:=([A-Za-z0-9+/]{4})\r?\n)?-----END PGP PUBLIC KEY BLOCK-----\s*$/;

/**
 * One armored OpenPGP public key (docs/code-sync.md, "Signed commits and tags"), as `gpg --armor --export` writes
 * it. Checked here, when the role is saved, so that a pasted private key, a cut or edited key, or something else
 * is refused with its reason instead of failing every later deploy on the nodes: the armor and its checksum, then
 * the packets, which must start with a version 4 public key (what the nodes' gpg imports) and hold no secret key.
 */
export const openpgpKeySchema = z
	.string(wrongType('must be an armored OpenPGP public key'))
	.max(10_000, 'at most 10000 characters: export it with gpg --armor --export-options export-minimal --export')
	.superRefine((text, ctx) => {
		const key = text.trim();
		if (/-----BEGIN PGP PRIVATE KEY BLOCK-----/.test(key)) {
			ctx.addIssue({ code: 'custom', message: 'is a private key: paste the public key (gpg --armor --export <key>)' });
			return;
		}
		const m = PUBLIC_ARMOR.exec(key);
		if (!m) {
			ctx.addIssue({
				code: 'custom',
				message: 'must be one armored OpenPGP public key, from -----BEGIN PGP PUBLIC KEY BLOCK----- to its END line'
			});
			return;
		}
		const bytes = Buffer.from(m[1]!.replace(/\s/g, ''), 'base64');
		if (m[2] !== undefined && crc24(bytes) !== Buffer.from(m[2], 'base64').readUIntBE(0, 3)) {
			ctx.addIssue({ code: 'custom', message: 'its armor checksum does not match: the key was cut or changed' });
			return;
		}
		const packets = openpgpPackets(bytes);
		if (!packets || !packets.length) {
			ctx.addIssue({ code: 'custom', message: 'its packets are broken: the key was cut or changed' });
		} else if (packets.some(([tag]) => tag === 5 || tag === 7)) {
			ctx.addIssue({
				code: 'custom',
				message: 'holds a secret key: paste the public key (gpg --armor --export <key>)'
			});
		} else if (packets[0]![0] !== 6 || packets[0]![1] !== 4) {
			ctx.addIssue({ code: 'custom', message: 'must start with an OpenPGP version 4 public key' });
		}
	});

/**
 * Which signatures a role's targets need (null: none): SSH signing keys as allowed signers lines, OpenPGP public
 * keys armored; a target signed by any one of them deploys. At least one of the two lists.
 */
export const signaturesSchema = z
	.object(
		{
			allowed_signers: z
				.array(allowedSignerSchema, wrongType('must be a list of allowed signer lines'))
				.max(32, 'at most 32 allowed signers')
				.optional(),
			openpgp_keys: z
				.array(openpgpKeySchema, wrongType('must be a list of armored OpenPGP public keys'))
				.max(8, 'at most 8 OpenPGP keys')
				.optional()
		},
		wrongType('must be {allowed_signers: [...], openpgp_keys: [...]} or null')
	)
	.strict()
	.refine((v) => (v.allowed_signers?.length ?? 0) + (v.openpgp_keys?.length ?? 0) > 0, {
		message: 'needs at least one allowed signer or OpenPGP key',
		path: ['allowed_signers']
	});

export const readinessSchema = timedCommandSchema(300, 30);

/**
 * The pre-flight snapshot: the role's folder and these data paths archived on the node before the switch,
 * the newest `keep` kept; `restore_command` (empty: none) puts one back when the update rolls back.
 */
export const snapshotSchema = z
	.object(
		{
			data_paths: z
				.array(
					absolutePathSchema.refine((p) => p !== '/', 'must not be /'),
					wrongType('must be a list of absolute paths')
				)
				.max(16, 'at most 16 data paths')
				.default([]),
			keep: fromText(
				z
					.number(wrongType('must be a number'))
					.int('must be a whole number')
					.min(1, 'must be 1 to 50')
					.max(50, 'must be 1 to 50')
			).default(3),
			deadline_seconds: fromText(
				z
					.number(wrongType('must be a number'))
					.int('must be a whole number')
					.min(1, 'must be 1 to 3600')
					.max(3600, 'must be 1 to 3600')
			).default(600),
			restore_command: argvSchema.default([])
		},
		wrongType('must be {data_paths, keep, deadline_seconds, restore_command} or null')
	)
	.strict();

/** Quiesce before the restart and resume after it, each under its own deadline. */
export const quiesceSchema = z
	.object(
		{ quiesce: timedCommandSchema(600, 60), resume: timedCommandSchema(600, 60) },
		wrongType('must be {quiesce: {argv, deadline_seconds}, resume: {argv, deadline_seconds}} or null')
	)
	.strict();

/** A commands role's programs fetch the code themselves: there is no checkout to verify a signature in. */
export const SIGNATURES_NEED_GIT = 'only git and push roles can require signatures (a commands role has no checkout)';

/** A role's default system-update policy; null leaves its nodes to their own (or the fallback, security). */
const updatePolicySchema = z.enum(['full', 'security', 'manual'], { error: 'must be full, security, manual or null' });

export const methodSchema = z.enum(['git', 'push', 'commands'], { error: 'must be git, push or commands' });

const roleFields = {
	name: roleNameSchema,
	description: z.string().max(500, 'must be at most 500 characters').default(''),
	method: methodSchema.default('git'),
	path: absolutePathSchema.refine((p) => p !== '/', 'must not be /'),
	source_repo: absolutePathSchema.nullable().optional(),
	commands: deployCommandsSchema.nullable().optional(),
	branch: branchSchema.default('main'),
	follow_tags: followTagsSchema.nullable().default(null),
	units: z.array(unitNameSchema, wrongType('must be a list of unit names')).max(16, 'at most 16 units').default([]),
	install_command: argvSchema.default([]),
	restart_command: argvSchema.default([]),
	health: healthCheckSchema.default({ type: 'units' }),
	health_timeout_seconds: fromText(
		z
			.number(wrongType('must be a number'))
			.int('must be a whole number')
			.min(1, 'must be 1 to 600')
			.max(600, 'must be 1 to 600')
	).default(30),
	order: fromText(z.number(wrongType('must be a number')).int('must be a whole number').min(0).max(10_000)).default(
		100
	),
	auto_update: z.boolean(wrongType('must be true or false')).default(false),
	auto_update_interval_minutes: fromText(
		z
			.number(wrongType('must be a number'))
			.int('must be a whole number')
			.min(1, 'must be 1 to 10080')
			.max(10_080, 'must be 1 to 10080')
	).default(60),
	auto_update_max_failures_per_day: fromText(
		z
			.number(wrongType('must be a number'))
			.int('must be a whole number')
			.min(1, 'must be 1 to 100')
			.max(100, 'must be 1 to 100')
	).default(3),
	signatures: signaturesSchema.nullable().default(null),
	readiness_check: readinessSchema.nullable().default(null),
	snapshot: snapshotSchema.nullable().default(null),
	quiesce: quiesceSchema.nullable().default(null),
	update_policy: updatePolicySchema.nullable().default(null)
};

export const createRoleSchema = z
	.object(roleFields)
	.strict()
	.refine((r) => r.method !== 'push' || !!r.source_repo, {
		message: 'a push role needs the console-side git checkout',
		path: ['source_repo']
	})
	.refine((r) => (r.method === 'commands') === !!r.commands, {
		message: 'the commands method needs its commands (backup, pull, migrate, smoke, switch), and only it has them',
		path: ['commands']
	})
	.refine((r) => r.health.type !== 'units' || r.units.length > 0, {
		message: 'a health check of type units needs at least one unit',
		path: ['units']
	})
	.refine((r) => r.method !== 'commands' || !r.signatures, {
		message: SIGNATURES_NEED_GIT,
		path: ['signatures']
	});

/** PATCH: any field but the name; defaults do not apply, so an absent field stays as it is. */
export const updateRoleSchema = z
	.object({
		description: roleFields.description.removeDefault(),
		method: methodSchema,
		path: roleFields.path,
		source_repo: absolutePathSchema.nullable(),
		commands: deployCommandsSchema.nullable(),
		branch: branchSchema,
		follow_tags: followTagsSchema.nullable(),
		units: z.array(unitNameSchema).max(16, 'at most 16 units'),
		install_command: argvSchema,
		restart_command: argvSchema,
		health: healthCheckSchema,
		health_timeout_seconds: roleFields.health_timeout_seconds.removeDefault(),
		order: roleFields.order.removeDefault(),
		auto_update: z.boolean(wrongType('must be true or false')),
		auto_update_interval_minutes: roleFields.auto_update_interval_minutes.removeDefault(),
		auto_update_max_failures_per_day: roleFields.auto_update_max_failures_per_day.removeDefault(),
		signatures: signaturesSchema.nullable(),
		readiness_check: readinessSchema.nullable(),
		snapshot: snapshotSchema.nullable(),
		quiesce: quiesceSchema.nullable(),
		update_policy: updatePolicySchema.nullable()
	})
	.partial()
	.strict()
	.refine((v) => Object.keys(v).length > 0, 'nothing to change');

const authorSchema = z
	.string()
	.max(200, 'must be at most 200 characters')
	.refine((v) => !controlChars.test(v), 'must not contain control characters');

/** `POST /api/code-source/notify` (docs/code-sync.md); `commit_hash` is accepted too, as older hooks spell it. */
export const notifySchema = z.preprocess(
	(v) => {
		if (v && typeof v === 'object' && !('commit' in v) && 'commit_hash' in v) {
			const { commit_hash, ...rest } = v as Record<string, unknown>;
			return { ...rest, commit: commit_hash };
		}
		return v;
	},
	z
		.object({
			commit: commitSchema,
			changed_roles: z
				.array(roleNameSchema, wrongType('must be a list of role names'))
				.min(1, 'must name at least one role')
				.max(64, 'at most 64 roles'),
			branch: branchSchema.optional(),
			tag: gitRefSchema.optional(),
			message: z.string().max(2000, 'must be at most 2000 characters').optional(),
			author: authorSchema.optional()
		})
		.strict()
);

export const markSyncedSchema = z.object({ role: roleNameSchema, commit: commitSchema }).strict();

export const pinSchema = z.object({ commit: commitSchema }).strict();

/** Which nodes an update covers; all three narrow (a node must match every given list). */
export const updateScopeSchema = z
	.object({
		nodes: z
			.array(z.union([uuidSchema, nodeNameSchema]), wrongType('must be a list of node ids or names'))
			.max(10_000)
			.optional(),
		roles: z.array(roleNameSchema, wrongType('must be a list of role names')).max(64).optional(),
		labels: z
			.array(
				z
					.string()
					.regex(
						/^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}(=.{0,255})?$/,
						'labels are name or name=value, names of letters, digits, _ . / -'
					),
				wrongType('must be a list of labels (name=value)')
			)
			.max(16)
			.optional()
	})
	.strict();
export type UpdateScope = z.infer<typeof updateScopeSchema>;

export const triggerSchema = z
	.object({
		scope: updateScopeSchema.optional(),
		dry_run: z.boolean(wrongType('must be true or false')).default(false),
		concurrency: fromText(
			z.number(wrongType('must be a number')).int('must be a whole number').min(1).max(500)
		).optional(),
		max_failure_percent: fromText(z.number(wrongType('must be a number')).min(0).max(100)).optional(),
		max_failures: fromText(
			z.number(wrongType('must be a number')).int('must be a whole number').min(0).max(100_000)
		).optional(),
		stop_on_first_failure: z.boolean(wrongType('must be true or false')).optional(),
		/** The commits the operator saw in the plan; the update refuses to run if a role moved since. */
		expect: z.record(roleNameSchema, commitSchema).optional()
	})
	.strict();
