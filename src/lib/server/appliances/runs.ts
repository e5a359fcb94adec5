import { pushSchema } from '$lib/schemas/appliances';
import { recordAudit, type Actor } from '$lib/server/audit';
import { createRun, type RunSummary } from '$lib/server/engine';
import { conflict, ServiceError } from '$lib/server/errors';
import { validate } from '$lib/server/http/api';
import { getRelease } from '$lib/server/releases/releases';
import { resolveNodes } from '$lib/server/sysupdates/targets';
import { getImage } from './images';

/** `POST /api/appliances/push`: an image to the named appliances now, as one run (outside any rollout). */
export async function startPush(actor: Actor, body: unknown): Promise<Pick<RunSummary, 'id' | 'number'>> {
	const input = validate(pushSchema, body);
	const image = await getImage(input.image_id).catch(() => {
		throw new ServiceError('validation_failed', 'Unknown image', { image_id: 'no such image' });
	});
	if (image.state !== 'complete') {
		throw conflict(`The image has ${image.receivedBytes} of ${image.size} bytes: finish its upload first`, {
			image_id: 'the image is not uploaded completely'
		});
	}
	const targets = await resolveNodes(input.nodes, 'nodes');
	const notAppliance = targets.filter((n) => n.kind !== 'appliance');
	if (notAppliance.length) {
		throw new ServiceError('validation_failed', `Not an appliance: ${notAppliance.map((n) => n.name).join(', ')}`, {
			nodes: `${notAppliance[0]!.name} is not an appliance`
		});
	}
	const unpinned = targets.filter((n) => n.hostKeyStatus !== 'pinned');
	if (unpinned.length) {
		throw new ServiceError('validation_failed', `Host key not pinned: ${unpinned.map((n) => n.name).join(', ')}`, {
			nodes: `${unpinned[0]!.name} has no pinned host key`
		});
	}
	const release = await getRelease(image.releaseId);
	const run = await createRun(actor, {
		kind: 'appliance-update',
		title: `Appliance image ${release.version} to ${targets.length} appliance${targets.length === 1 ? '' : 's'}`,
		nodeIds: targets.map((n) => n.id),
		params: {
			image_id: image.id,
			window: input.window,
			window_poll_seconds: input.window_poll_seconds,
			reboot_timeout_seconds: input.reboot_timeout_seconds
		},
		options: { concurrency: input.concurrency },
		exclusive: true
	});
	await recordAudit(actor, {
		action: 'appliance.push',
		targetType: 'release',
		targetId: release.id,
		details: { run_id: run.id, image_id: image.id, nodes: targets.map((n) => n.name), window: input.window }
	});
	return { id: run.id, number: run.number };
}
