import { eq } from 'drizzle-orm';
import { applianceImages } from '$lib/server/db/schema';
import { registerFlow } from '$lib/server/engine';
import { registerSweepInspector } from '$lib/server/fleet/sweep';
import { registerReleaseKind } from '$lib/server/rollouts/release-kinds';
import { applianceUpdateFlow } from './flow';
import { imageOfRelease } from './images';
import { applianceInstallFlow } from './install';
import { applianceRevertFlow, applianceRevertRun } from './revert';
import { applianceSlotsInspector } from './slots';

/**
 * Appliances' part of the console: the A/B flow, and releases that carry an image rolled out through it with
 * the rollouts' stages, thresholds and controls (docs/appliances.md, "Rollouts").
 */
export function registerAppliances(): void {
	registerFlow(applianceUpdateFlow);
	registerFlow(applianceRevertFlow);
	registerFlow(applianceInstallFlow);
	registerSweepInspector('appliance-slots', applianceSlotsInspector);
	registerReleaseKind({
		name: 'appliance-image',
		nodeKind: 'appliance',
		bakesBetweenStages: true,
		async claims(release, exec) {
			const [row] = await exec
				.select({ id: applianceImages.id })
				.from(applianceImages)
				.where(eq(applianceImages.releaseId, release.id));
			return !!row;
		},
		async stageRun(release, rollout) {
			const image = await imageOfRelease(release.id);
			return {
				kind: 'appliance-update',
				params: { image_id: image!.id, rollout_id: rollout.id, window: 'wait' }
			};
		},
		revertRun: applianceRevertRun
	});
}
