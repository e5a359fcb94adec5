import { z } from 'zod';
import { fromText, uuidSchema } from './common';
import { argvSchema } from './code-sync';
import { hostSchema, absolutePathSchema, portSchema } from './remote';
import { nodeNameSchema, roleNameSchema } from './nodes';

/**
 * TLS certificates' inputs (docs/certificates.md): a role's certificate settings, scans, rotations and the
 * report a node sends about itself. Paths and commands reach a node's command line only through the `sh` tag.
 */

const nodeList = z
	.array(z.union([uuidSchema, nodeNameSchema]), { error: 'must be a list of node ids or names' })
	.min(1, 'must name at least one node, or be left out for all')
	.max(10_000);

/** `POST /api/security/certificates/scan`: the nodes to look at (all with a certificate role when absent). */
export const scanSchema = z.object({ nodes: nodeList.optional() }).strict();

/** `POST /api/security/certificates/rotate`: the nodes, or every node whose certificate expires within `expiring_within_days`. */
export const rotateSchema = z
	.object({
		nodes: nodeList.optional(),
		expiring_within_days: fromText(z.number().int('must be a whole number').min(0).max(3650)).optional(),
		dry_run: z.boolean({ error: 'must be true or false' }).default(false)
	})
	.strict();

const endpointSchema = z
	.object({
		port: portSchema,
		servername: hostSchema.optional()
	})
	.strict();

const sanSchema = hostSchema;

export const certRoleSchema = z
	.object({
		role: roleNameSchema,
		cert_path: absolutePathSchema,
		key_path: absolutePathSchema,
		endpoints: z.array(endpointSchema, { error: 'must be a list of {port, servername?}' }).max(16).default([]),
		reload_command: argvSchema.refine((a) => a.length > 0, 'is required'),
		issuer: z.enum(['ca', 'self-signed'], { error: 'must be ca or self-signed' }).default('ca'),
		validity_days: fromText(z.number().int('must be a whole number').min(1).max(825)).default(90),
		extra_sans: z.array(sanSchema, { error: 'must be a list of DNS names or addresses' }).max(32).default([]),
		order: fromText(z.number().int('must be a whole number').min(0).max(10_000)).default(100)
	})
	.strict()
	.refine((r) => r.cert_path !== r.key_path, { message: 'must differ from cert_path', path: ['key_path'] });
export type CertRoleInput = z.infer<typeof certRoleSchema>;

/** The largest PEM a node may report for one certificate (a leaf with a few intermediates is under 10 KiB). */
export const MAX_REPORTED_PEM = 64 * 1024;
/** The most certificates one report may carry. */
export const MAX_REPORTED_CERTIFICATES = 64;

const endpointText = z
	.string({ error: 'must be host:port' })
	.max(300)
	.regex(/^[^\s:]+:\d{1,5}$/, 'must be host:port');

/** `POST /api/security/certificates/report`: a node's own certificates, as PEM (what it serves or keeps). */
export const reportSchema = z
	.object({
		node: z.union([uuidSchema, nodeNameSchema], { error: 'must be a node id or name' }),
		certificates: z
			.array(
				z
					.object({
						path: absolutePathSchema.optional(),
						endpoint: endpointText.optional(),
						pem: z
							.string({ error: 'must be a PEM certificate' })
							.min(1, 'is required')
							.max(MAX_REPORTED_PEM, `must be at most ${MAX_REPORTED_PEM} bytes`)
					})
					.strict()
					.refine((c) => (c.path === undefined) !== (c.endpoint === undefined), {
						message: 'give exactly one of path or endpoint',
						path: ['path']
					}),
				{ error: 'must be a list of {path or endpoint, pem}' }
			)
			.min(1, 'must hold at least one certificate')
			.max(MAX_REPORTED_CERTIFICATES, `at most ${MAX_REPORTED_CERTIFICATES} certificates`)
	})
	.strict();
export type ReportInput = z.infer<typeof reportSchema>;

const caName = z
	.string({ error: 'is required' })
	.trim()
	.min(1, 'is required')
	.max(100, 'must be at most 100 characters')
	// eslint-disable-next-line no-control-regex -- control characters are what it refuses
	.regex(/^[^\u0000-\u001f\u007f]+$/, 'must not contain control characters');

const pemText = (what: string) =>
	z
		.string({ error: `must be a PEM ${what}` })
		.min(1, 'is required')
		.max(MAX_REPORTED_PEM, `must be at most ${MAX_REPORTED_PEM} bytes`);

/** The internal CA: created here (its key never leaves the console, sealed at rest), or imported with its key. */
export const createCaSchema = z
	.object({
		name: caName,
		key_type: z.enum(['ec', 'rsa', 'ed25519'], { error: 'must be ec, rsa or ed25519' }).default('ec'),
		validity_days: fromText(z.number().int('must be a whole number').min(30).max(36_500)).default(3650)
	})
	.strict();

export const importCaSchema = z
	.object({ name: caName, cert_pem: pemText('CA certificate'), key_pem: pemText('private key') })
	.strict();

/** A CA that chains are verified against, without its key. */
export const trustCaSchema = z.object({ name: caName, cert_pem: pemText('CA certificate') }).strict();

export const revokeSchema = z
	.object({ reason: z.string().trim().max(200, 'must be at most 200 characters').default('unspecified') })
	.strict();

/** GET /api/security/certificates/issued: JSON, or a CSV download. */
export const issuedQuerySchema = z
	.object({ format: z.enum(['json', 'csv'], { error: 'must be json or csv' }).default('json') })
	.strict();

/** GET /crl/{id}.crl: the CA's id. */
export const crlPathSchema = z.object({ id: uuidSchema });
