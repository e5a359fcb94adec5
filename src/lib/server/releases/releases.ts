import { desc, eq, lt } from 'drizzle-orm';
import { manifestSchema } from '$lib/schemas/releases';
import { recordAudit, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { releases, type Release } from '$lib/server/db/schema';
import { conflict, notFound, ServiceError } from '$lib/server/errors';
import { validate } from '$lib/server/http/api';
import { releaseKeys, minimumVersion } from './keys';
import { compareVersions } from '$lib/semver';
import { SignatureRefused, verifyManifest } from './signing';

/**
 * `POST /api/releases`: a manifest is checked field by field, then its signature over the canonical form, then
 * its version against rollback protection's floor (docs/releases.md). Only a verified manifest is stored, with
 * the key that verified it.
 */
export async function createRelease(actor: Actor, body: unknown): Promise<Release> {
	const manifest = validate(manifestSchema, body);
	let verified;
	try {
		verified = verifyManifest(body as Record<string, unknown>, releaseKeys());
	} catch (err) {
		if (!(err instanceof SignatureRefused)) throw err;
		await recordAudit(actor, {
			action: 'release.create',
			targetType: 'release',
			targetId: manifest.version,
			result: 'denied',
			details: { reason: err.message }
		});
		throw new ServiceError('validation_failed', `Signature refused: ${err.message}`, { signature: err.message });
	}
	// A release below the floor could never be rolled out: refused rather than kept, as the issue asks.
	try {
		assertAllowedVersion(manifest.version, 'version');
	} catch (err) {
		await recordAudit(actor, {
			action: 'release.create',
			targetType: 'release',
			targetId: manifest.version,
			result: 'denied',
			details: { reason: (err as ServiceError).message }
		});
		throw err;
	}
	const [existing] = await db().select().from(releases).where(eq(releases.version, manifest.version));
	if (existing) {
		throw conflict(`Release ${manifest.version} already exists`, { version: 'a release with this version exists' });
	}
	const [row] = await db()
		.insert(releases)
		.values({
			version: manifest.version,
			sha: manifest.sha,
			channel: manifest.channel,
			migrationsRequired: manifest.migrations_required,
			breakingChanges: manifest.breaking_changes,
			releasedAt: new Date(manifest.released_at),
			signature: manifest.signature,
			algorithm: verified.algorithm,
			verifiedBy: verified.keyId,
			manifest: body as Record<string, unknown>,
			createdBy: actor.name
		})
		.returning();
	await recordAudit(actor, {
		action: 'release.create',
		targetType: 'release',
		targetId: row!.id,
		details: { version: row!.version, sha: row!.sha, channel: row!.channel, verified_by: verified.keyId }
	});
	return row!;
}

export async function listReleases(q: { limit: number; cursor?: string }): Promise<Release[]> {
	return db()
		.select()
		.from(releases)
		.where(q.cursor ? lt(releases.createdAt, new Date(q.cursor)) : undefined)
		.orderBy(desc(releases.createdAt))
		.limit(q.limit);
}

export async function getRelease(id: string): Promise<Release> {
	const [row] = await db().select().from(releases).where(eq(releases.id, id));
	if (!row) throw notFound('Release');
	return row;
}

/**
 * Per commit, the release that names it (a manifest may give an abbreviated commit, a node records the full one).
 * Releases are few (one per version): matched here rather than with one query per commit.
 */
export async function releasesForCommits(commits: string[]): Promise<Map<string, Release>> {
	const out = new Map<string, Release>();
	if (!commits.length) return out;
	const all = await db().select().from(releases).orderBy(desc(releases.createdAt));
	for (const c of commits) {
		const found = all.find((r) => c.startsWith(r.sha) || r.sha.startsWith(c));
		if (found) out.set(c, found);
	}
	return out;
}

/** Rollback protection: refuses (400) a version below the configured minimum, naming both. */
export function assertAllowedVersion(version: string, field: string, what = 'Release'): void {
	const floor = minimumVersion();
	if (floor && compareVersions(version, floor) < 0) {
		throw new ServiceError(
			'validation_failed',
			`${what} ${version} is below the minimum version ${floor} (rollback protection)`,
			{ [field]: `${version} is below the minimum version ${floor} configured by FLOTILLA_RELEASE_MIN_VERSION` }
		);
	}
}

/** What the API answers for a release. */
export function presentRelease(r: Release) {
	return {
		id: r.id,
		version: r.version,
		sha: r.sha,
		channel: r.channel,
		migrations_required: r.migrationsRequired,
		breaking_changes: r.breakingChanges,
		released_at: r.releasedAt.toISOString(),
		signature: r.signature,
		algorithm: r.algorithm,
		verified_by: r.verifiedBy,
		created_by: r.createdBy,
		created_at: r.createdAt.toISOString()
	};
}
