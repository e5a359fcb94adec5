import { X509Certificate } from 'node:crypto';
import type { ReportInput } from '$lib/schemas/certificates';
import { recordAudit, type Actor } from '$lib/server/audit';
import { ServiceError } from '$lib/server/errors';
import { observe, recordObservations, type Observation } from './inventory';
import { resolveNodes } from './scan';
import { trustedAuthorities } from './trust';
import { certificateBlocks } from './x509';

/**
 * `POST /api/security/certificates/report`: a node reports its own certificates (docs/certificates.md,
 * "Reports"). Everything is checked before anything is stored: one bad certificate refuses the whole report.
 * A private key sent by mistake is refused without a trace of it: it is not stored, logged, audited or echoed.
 */

/** The largest report body; well under adapter-node's own BODY_SIZE_LIMIT so this check answers in JSON. */
export const MAX_REPORT_BYTES = 256 * 1024;

const PRIVATE_KEY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;
const ANY_PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/** The PEM's certificates, or the reason (for the field) it is refused. */
export function parseReportedPem(pem: string): { certs: X509Certificate[] } | { problem: string } {
	if (PRIVATE_KEY.test(pem)) {
		return { problem: 'holds a private key: send only the certificate (nothing of this report was stored)' };
	}
	const blocks = certificateBlocks(pem);
	if (!blocks.length) return { problem: 'is not a PEM certificate (-----BEGIN CERTIFICATE-----)' };
	if (pem.replace(ANY_PEM_BLOCK, '').trim()) return { problem: 'holds something besides PEM certificates' };
	if ([...pem.matchAll(ANY_PEM_BLOCK)].length !== blocks.length)
		return { problem: 'holds PEM blocks that are not certificates' };
	const certs: X509Certificate[] = [];
	for (const [i, block] of blocks.entries()) {
		try {
			certs.push(new X509Certificate(block));
		} catch {
			return { problem: `certificate ${i + 1} is not a valid X.509 certificate` };
		}
	}
	return { certs };
}

export async function reportCertificates(
	actor: Actor,
	input: ReportInput
): Promise<{ node: string; recorded: number }> {
	const problems: Record<string, string> = {};
	const parsed = input.certificates.map((c, i) => {
		const result = parseReportedPem(c.pem);
		if ('problem' in result) problems[`certificates.${i}.pem`] = result.problem;
		return result;
	});
	const keyProblem = Object.values(problems).some((p) => p.startsWith('holds a private key'));
	if (Object.keys(problems).length) {
		throw new ServiceError(
			'validation_failed',
			keyProblem ? 'A private key was sent: nothing was stored' : 'Some certificates are not valid: nothing was stored',
			problems
		);
	}
	const [node] = await resolveNodes([input.node], 'node');
	const trusted = await trustedAuthorities();
	const observations: Observation[] = input.certificates.map((c, i) => {
		const [leaf, ...chain] = (parsed[i] as { certs: X509Certificate[] }).certs;
		return {
			source: 'report',
			location: c.path ?? c.endpoint!,
			role: null,
			facts: observe(leaf!.toString(), trusted, chain)
		};
	});
	await recordObservations(node!.id, observations);
	await recordAudit(actor, {
		action: 'certificates.report',
		targetType: 'node',
		targetId: node!.id,
		details: {
			node: node!.name,
			certificates: observations.map((o) => ({ location: o.location, fingerprint: o.facts!.fingerprint }))
		}
	});
	return { node: node!.name, recorded: observations.length };
}
