import { and, eq } from 'drizzle-orm';
import { semverOf, type FleetUpdateInput } from '$lib/schemas/appliances';
import { DAYS } from '$lib/schemas/system-updates';
import { recordAudit, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { applianceImages, releases, type SysWindow } from '$lib/server/db/schema';
import { ServiceError } from '$lib/server/errors';
import { createRollout } from '$lib/server/rollouts/rollouts';
import { saveWindow } from '$lib/server/sysupdates/windows';

/*
 * `POST /api/fleet/updates` (docs/appliances.md, "Fleet updates"): one body naming an appliance image by version,
 * URL and sha256, with its staged rollout and the appliances' maintenance window, made into what the native
 * endpoints make — the rollout of the image's release, and System Updates' windows for the appliances it targets.
 * The body carries no signature, and an appliance boots only a signed image, so this endpoint never fetches
 * `iso_url` itself: the image must already be declared with its signature and received (POST
 * /api/appliances/images, uploaded or fetched from its `url`).
 */

const NOT_UPLOADED =
	'this body carries no signature, so the image is not fetched from here: declare it with its signature first (POST /api/appliances/images, uploaded or with its url), then send this again';

/** The release `version` names and its complete image with `sha256`; a 400 naming the field that does not fit. */
async function uploadedImage(input: FleetUpdateInput) {
	const version = semverOf(input.version);
	const [named] = await db()
		.select({ release: releases, image: applianceImages })
		.from(releases)
		.leftJoin(applianceImages, eq(applianceImages.releaseId, releases.id))
		.where(eq(releases.version, version));
	if (named?.image?.state === 'complete' && named.image.sha256 === input.sha256) {
		return { release: named.release, image: named.image };
	}
	if (named?.image?.state === 'complete') {
		throw new ServiceError('validation_failed', `Release ${version}'s image has another sha256`, {
			sha256: `release ${version}'s uploaded image has sha256 ${named.image.sha256}`
		});
	}
	const [other] = await db()
		.select({ version: releases.version })
		.from(applianceImages)
		.innerJoin(releases, eq(releases.id, applianceImages.releaseId))
		.where(and(eq(applianceImages.sha256, input.sha256), eq(applianceImages.state, 'complete')));
	if (other) {
		throw new ServiceError('validation_failed', `The image with this sha256 is release ${other.version}`, {
			version: `the uploaded image with this sha256 is release ${other.version}, not ${version}`
		});
	}
	throw new ServiceError('validation_failed', `No uploaded image of release ${version} has this sha256`, {
		iso_url: NOT_UPLOADED
	});
}

/**
 * The rollout's failure with the field names of the body that was sent: its stages are `rollout.stages`, its
 * target (every appliance on the release's channel) is `rollout`, its release (below the minimum version) `version`.
 */
function inFleetShape(err: unknown): unknown {
	if (!(err instanceof ServiceError)) return err;
	const named = (k: string) =>
		k.startsWith('stages') ? `rollout.${k}` : k === 'target' ? 'rollout' : k === 'release_id' ? 'version' : k;
	const fields = Object.fromEntries(Object.entries(err.fields).map(([k, v]) => [named(k), v] as const));
	return new ServiceError(err.code, err.message, fields);
}

/**
 * Creates the image release's rollout to every appliance on its channel (stages with `delay_hours` as the wait
 * after each stage), then the maintenance window of each appliance the rollout targets now. createRollout checks
 * everything before it writes, and the windows' input was checked with the body; the driver starts the rollout
 * when the caller takes a turn.
 */
export async function createFleetUpdate(actor: Actor, input: FleetUpdateInput) {
	const { release, image } = await uploadedImage(input);
	const native = {
		release_id: release.id,
		target: {},
		strategy: input.rollout.strategy,
		stages: input.rollout.stages?.map((s) => ({ percent: s.percent, bake_seconds: Math.round(s.delay_hours * 3600) })),
		failure_threshold_percent: 10,
		min_finished_nodes: 3,
		concurrency: 5,
		require_approval: false,
		respect_windows: true
	};
	const { rollout, preview } = await createRollout(actor, { ...native, dry_run: false }).catch((err: unknown) => {
		throw inFleetShape(err);
	});
	const windows: SysWindow[] = [];
	const w = input.maintenance_window;
	if (w) {
		for (const node of preview.stages.flatMap((s) => s.nodes)) {
			windows.push(
				await saveWindow(actor, {
					scope: 'node',
					target: node.id,
					start: w.start,
					end: w.end,
					time_zone: w.timezone,
					days: w.days.map((d) => DAYS.indexOf(d))
				})
			);
		}
	}
	await recordAudit(actor, {
		action: 'appliance.fleet_update',
		targetType: 'rollout',
		targetId: rollout!.id,
		details: {
			version: release.version,
			image_id: image.id,
			iso_url: input.iso_url,
			windows: windows.length
		}
	});
	return { release, image, rollout: rollout!, preview, windows };
}
