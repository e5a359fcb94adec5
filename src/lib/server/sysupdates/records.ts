import { and, eq, inArray, sql } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { sysCandidateVersions, sysNodeScans, sysPendingPackages } from '$lib/server/db/schema';
import type { PendingPackage } from './apt';

/** What one scan of a node found (docs/system-updates.md, "Scan"). */
export interface ScanResult {
	packages: PendingPackage[];
	rebootRequired: boolean;
	rebootPackages: string[];
	/** null: needrestart is not installed on the node. */
	servicesToRestart: string[] | null;
	held: string[];
}

/**
 * Replaces the node's pending packages with what the scan found, in one transaction (a reader sees the old
 * list or the new, never half), and notes each candidate version the fleet has not been offered before.
 */
export async function recordScan(nodeId: string, runId: string | null, found: ScanResult): Promise<void> {
	const now = new Date();
	await db().transaction(async (tx) => {
		await tx.delete(sysPendingPackages).where(eq(sysPendingPackages.nodeId, nodeId));
		if (found.packages.length) {
			await tx.insert(sysPendingPackages).values(
				found.packages.map((p) => ({
					nodeId,
					name: p.name,
					arch: p.arch,
					installed: p.installed,
					candidate: p.candidate,
					suites: p.suites,
					security: p.security,
					securityReason: p.securityReason
				}))
			);
			// The first scan to see a version wins; later ones keep its date (the soak gate's basis).
			await tx
				.insert(sysCandidateVersions)
				.values(
					found.packages.map((p) => ({
						name: p.name,
						arch: p.arch,
						version: p.candidate,
						security: p.security,
						firstSeenAt: now,
						firstNodeId: nodeId
					}))
				)
				.onConflictDoNothing();
		}
		const row = {
			scannedAt: now,
			pendingCount: found.packages.length,
			securityCount: found.packages.filter((p) => p.security).length,
			rebootRequired: found.rebootRequired,
			rebootPackages: found.rebootPackages,
			servicesToRestart: found.servicesToRestart,
			held: found.held,
			lastError: null,
			lastErrorAt: null,
			lastRunId: runId
		};
		await tx
			.insert(sysNodeScans)
			.values({ nodeId, ...row })
			.onConflictDoUpdate({ target: sysNodeScans.nodeId, set: row });
	});
}

/** A scan that could not read the node: what was known stays, with the reason beside it. */
export async function recordScanFailure(nodeId: string, runId: string, error: string): Promise<void> {
	const row = { lastError: error, lastErrorAt: new Date(), lastRunId: runId };
	await db()
		.insert(sysNodeScans)
		.values({ nodeId, ...row })
		.onConflictDoUpdate({ target: sysNodeScans.nodeId, set: row });
}

/** When the fleet first saw each of these candidate versions (keyed `name arch version`). */
export async function firstSeenOf(
	list: { name: string; arch: string; candidate: string }[]
): Promise<Map<string, Date>> {
	if (!list.length) return new Map();
	const rows = await db()
		.select()
		.from(sysCandidateVersions)
		.where(inArray(sysCandidateVersions.name, [...new Set(list.map((p) => p.name))]));
	return new Map(rows.map((r) => [`${r.name} ${r.arch} ${r.version}`, r.firstSeenAt]));
}

/** When the fleet first saw a candidate version (null: never). */
export async function firstSeen(name: string, arch: string, version: string): Promise<Date | null> {
	const [row] = await db()
		.select({ at: sysCandidateVersions.firstSeenAt })
		.from(sysCandidateVersions)
		.where(
			and(
				eq(sysCandidateVersions.name, name),
				eq(sysCandidateVersions.arch, arch),
				eq(sysCandidateVersions.version, version)
			)
		);
	return row?.at ?? null;
}

/** Clears what a reboot settles, as soon as the node is back (the next scan confirms it). */
export async function recordRebooted(nodeId: string): Promise<void> {
	await db()
		.update(sysNodeScans)
		.set({
			rebootRequired: false,
			rebootPackages: [],
			servicesToRestart: sql`case when ${sysNodeScans.servicesToRestart} is null then null else '{}'::text[] end`
		})
		.where(eq(sysNodeScans.nodeId, nodeId));
}

/** The outcome of a node's system update: a failure (with why) until an update of it succeeds. */
export async function recordUpdateOutcome(nodeId: string, runId: string, error: string | null): Promise<void> {
	const row = { updateError: error, updateFailedAt: error ? new Date() : null, updateRunId: runId };
	await db()
		.insert(sysNodeScans)
		.values({ nodeId, ...row })
		.onConflictDoUpdate({ target: sysNodeScans.nodeId, set: row });
}
