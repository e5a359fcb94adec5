import { setTimeout as sleep } from 'node:timers/promises';
import { eq } from 'drizzle-orm';
import { z } from 'zod';
import { db } from '$lib/server/db';
import { releases, type ApplianceImage, type ApplianceUpdateState } from '$lib/server/db/schema';
import { StepFailed, type Flow, type StepContext } from '$lib/server/engine';
import { SshError } from '$lib/server/ssh/errors';
import { uploadFile } from '$lib/server/ssh/sftp';
import { sh } from '$lib/server/ssh/shell';
import { nodeInsideWindow, windowsOf } from '$lib/server/sysupdates/windows';
import { badReleaseFor, recordFallback } from './fallbacks';
import { getImage, imagePath } from './images';
import { observeDownload, observeReboot } from './metrics';
import { recordUpdate, type UpdateKey } from './records';
import { readSlots } from './slots';
import {
	liveConnection,
	otherSlot,
	rebootAndReconnect,
	reconnect,
	releaseConnection,
	run,
	type Slot,
	type SlotReport
} from './remote';

/*
 * The A/B update of one appliance (docs/appliances.md, "The A/B flow"):
 *   pending → uploading (with %) → verifying → ready → rebooting → verifying_health → succeeded | failed | rolled_back
 * The image goes to the standby slot over SFTP (resumed after a dropped connection), the appliance itself checks
 * its sha256, its signature and its minimum version, and only then is the slot set for the next boot: the active
 * slot is never touched before the reboot. The reboot waits for the maintenance window; the node must come back
 * in time, booted on the new slot, and pass the health gate before the slot is committed. Anything else goes
 * back to the good slot and ends rolled_back. Success is counted only after that gate.
 */

export const applianceUpdateParams = z
	.object({
		image_id: z.uuid(),
		rollout_id: z.uuid().optional(),
		/** `wait`: reboot inside the node's maintenance window; `ignore`: as soon as the image is ready. */
		window: z.enum(['wait', 'ignore']).default('ignore'),
		reboot_timeout_seconds: z.number().int().min(5).max(3600).default(600),
		/** How often a ready appliance looks at its window (and its skip-window request). */
		window_poll_seconds: z.number().int().min(1).max(600).default(30),
		upload_attempts: z.number().int().min(1).max(20).default(5)
	})
	.strict();
export type ApplianceUpdateParams = z.infer<typeof applianceUpdateParams>;

interface Memo {
	from?: Slot;
	to?: Slot;
	/** The image the standby slot was cleared for: an upload of it resumes rather than starts over. */
	clearedFor?: string;
	/** The reboot into the new slot was asked for: from here on, a failure is a rollback. */
	rebootIssued?: boolean;
	rebootAt?: number;
	committed?: boolean;
	fallback?: string;
}

type Ctx = StepContext<ApplianceUpdateParams>;
const memoOf = (ctx: Ctx) => ctx.memo as Memo;

interface Loaded {
	image: ApplianceImage;
	version: string;
}
const loaded = new Map<string, Loaded>();

async function imageFor(ctx: Ctx): Promise<Loaded> {
	const cached = loaded.get(ctx.params.image_id);
	if (cached) return cached;
	const image = await getImage(ctx.params.image_id);
	if (image.state !== 'complete') throw new StepFailed('the image has not been uploaded to the console completely');
	const [release] = await db().select().from(releases).where(eq(releases.id, image.releaseId));
	const found = { image, version: release!.version };
	loaded.set(image.id, found);
	return found;
}

const keyOf = (ctx: Ctx): UpdateKey => ({
	taskId: ctx.task.id,
	runId: ctx.task.runId,
	nodeId: ctx.node.id,
	nodeName: ctx.node.name,
	imageId: ctx.params.image_id,
	rolloutId: ctx.params.rollout_id ?? null
});

const mark = (ctx: Ctx, state: ApplianceUpdateState, patch: Parameters<typeof recordUpdate>[2] = {}) =>
	recordUpdate(keyOf(ctx), state, patch);

const report = (ctx: Ctx) => readSlots(ctx);

const rebootAndWait = (ctx: Ctx) => rebootAndReconnect(ctx, ctx.params.reboot_timeout_seconds);

/**
 * The appliance booted another slot than the intended one by its own logic: recorded fleet-wide, once. The memo
 * spares a second look within one execution; a step the console lost before it ended left no memo, and
 * `recordFallback` itself records nothing twice.
 */
async function noteFallback(ctx: Ctx, found: SlotReport, intended: Slot): Promise<string> {
	const memo = memoOf(ctx);
	if (memo.fallback) return memo.fallback;
	const reason = found.fallback || `booted slot ${found.active}, not slot ${intended}`;
	memo.fallback = reason;
	const { image } = await imageFor(ctx);
	await recordFallback({
		node: ctx.node,
		taskId: ctx.task.id,
		releaseId: image.releaseId,
		rolloutId: ctx.params.rollout_id,
		runId: ctx.task.runId,
		reason
	});
	return reason;
}

/** What the appliance booted, against what the console intended; a fallback is recorded fleet-wide. */
async function checkBootedSlot(ctx: Ctx, intended: Slot): Promise<void> {
	const found = await report(ctx);
	if (found.active === intended) return;
	const reason = await noteFallback(ctx, found, intended);
	await mark(ctx, 'verifying_health', { fallback: reason });
	throw new StepFailed(`the appliance fell back to slot ${found.active} on its own: ${reason}`);
}

export const applianceUpdateFlow: Flow<ApplianceUpdateParams> = {
	kind: 'appliance-update',
	title: 'Appliance update',
	parseParams: (p) => applianceUpdateParams.parse(p),
	steps: [
		{
			name: 'prepare',
			deadlineMs: 120_000,
			async do(ctx) {
				const { image, version } = await imageFor(ctx);
				const memo = memoOf(ctx);
				await mark(ctx, 'pending', { total: image.size });
				const bad = await badReleaseFor(image.releaseId, ctx.node);
				if (bad) {
					ctx.skip(
						`release ${version} is marked bad for hardware ${bad.hardware} since ${bad.nodeName} fell back (${bad.reason}); an operator must clear it first`
					);
				}
				const found = await report(ctx);
				if (found.active !== found.good) {
					throw new StepFailed(
						`slot ${found.active} is booted but not committed (the good slot is ${found.good}): finish or revert that update first`
					);
				}
				// A next boot left set by an update that never rebooted goes back to the good slot first.
				if (found.next !== found.good) await run(ctx, sh`flotilla-slot revert`);
				memo.from = found.active;
				memo.to = otherSlot(found.active);
				await mark(ctx, 'pending', { fromSlot: memo.from, toSlot: memo.to });
				if (memo.clearedFor !== image.id) {
					await run(ctx, sh`flotilla-slot clear ${memo.to}`);
					memo.clearedFor = image.id;
				}
				ctx.log(`version ${version}: slot ${memo.from} is booted; the image goes to slot ${memo.to}`);
			}
		},
		{
			name: 'upload',
			// A slow link to a large image: the step's budget, the node's own deadlines are per write.
			deadlineMs: 6 * 3_600_000,
			async do(ctx) {
				const { image } = await imageFor(ctx);
				const memo = memoOf(ctx);
				const remote = (await run(ctx, sh`flotilla-slot path ${memo.to!}`)).stdout.trim();
				const started = performance.now();
				let lastWrite = 0;
				let pending: Promise<void> = Promise.resolve();
				const progress = (bytes: number, total: number) => {
					const now = performance.now();
					if (bytes < total && now - lastWrite < 500) return;
					lastWrite = now;
					pending = pending.then(() => mark(ctx, 'uploading', { bytes, total })).catch(() => {});
				};
				await mark(ctx, 'uploading', { bytes: 0, total: image.size });
				for (let attempt = 1; ; attempt++) {
					try {
						const conn = await liveConnection(ctx);
						const sent = await uploadFile(conn, imagePath(image.id), remote, {
							resume: true,
							onProgress: (p) => progress(p.bytes, p.total),
							checksumDeadlineMs: 600_000,
							sha256: image.sha256
						});
						if (sent.resumedFrom > 0) ctx.log(`resumed the upload at byte ${sent.resumedFrom}`);
						break;
					} catch (err) {
						if (!(err instanceof SshError) || err.failure === 'integrity' || attempt >= ctx.params.upload_attempts) {
							throw new StepFailed((err as Error).message);
						}
						ctx.log(`the connection dropped during the upload (${err.message}); reconnecting to resume`);
						await reconnect(ctx, 120_000);
					}
				}
				await pending;
				await mark(ctx, 'uploading', { bytes: image.size, total: image.size });
				observeDownload((performance.now() - started) / 1000);
			}
		},
		{
			name: 'verify',
			deadlineMs: 900_000,
			async do(ctx) {
				const { image, version } = await imageFor(ctx);
				await mark(ctx, 'verifying');
				// The appliance checks with its own keys and floor: a console cannot vouch for an image.
				await run(ctx, sh`flotilla-slot verify ${memoOf(ctx).to!} ${image.sha256} ${image.signature} ${version}`, {
					deadlineMs: 600_000
				});
			}
		},
		{
			name: 'set-next',
			deadlineMs: 60_000,
			async do(ctx) {
				await run(ctx, sh`flotilla-slot set-next ${memoOf(ctx).to!}`);
				await mark(ctx, 'ready');
			},
			async undo(ctx) {
				await run(ctx, sh`flotilla-slot revert`);
			}
		},
		{
			name: 'window',
			// A week of waiting at most: the reboot is left to a later push after that.
			deadlineMs: 7 * 86_400_000,
			async do(ctx) {
				if (ctx.params.window === 'ignore') return;
				let said = '';
				let skipping = false;
				const say = (line: string) => {
					if (line !== said) ctx.log(line);
					said = line;
				};
				for (;;) {
					const window = (await windowsOf([ctx.node])).get(ctx.node.id) ?? null;
					if (!window) {
						say('no maintenance window applies to this appliance: rebooting now');
						return;
					}
					const inside = nodeInsideWindow(window, new Date());
					const found = await report(ctx);
					if (inside && !found.skipWindow) {
						say('inside the maintenance window: rebooting');
						return;
					}
					if (inside) {
						skipping = true;
						say(
							'the appliance asked to skip this maintenance window (flotilla-slot --skip-window): waiting for the next'
						);
					} else if (skipping) {
						// The window it skipped is over: the next one counts again.
						await run(ctx, sh`flotilla-slot --skip-window --cancel`);
						skipping = false;
						say('the skipped window closed: waiting for the next');
					} else {
						say('ready: waiting for the maintenance window');
					}
					await sleep(ctx.params.window_poll_seconds * 1000, undefined, { signal: ctx.signal });
				}
			}
		},
		{
			name: 'reboot',
			deadlineMs: 3 * 3_600_000,
			async do(ctx) {
				const memo = memoOf(ctx);
				const intended = memo.to!;
				await mark(ctx, 'rebooting');
				memo.rebootIssued = true;
				memo.rebootAt = Date.now();
				await rebootAndWait(ctx);
				await mark(ctx, 'verifying_health');
				await checkBootedSlot(ctx, intended);
				// The gate runs on the appliance; the slot is committed only when it passes.
				await run(ctx, sh`flotilla-slot commit`, { deadlineMs: 300_000 });
				memo.committed = true;
				observeReboot((Date.now() - memo.rebootAt) / 1000);
				await report(ctx);
			},
			async undo(ctx) {
				const memo = memoOf(ctx);
				if (!memo.rebootIssued || memo.committed) return;
				await liveConnection(ctx, ctx.params.reboot_timeout_seconds * 1000);
				const found = await report(ctx);
				// Not back in time, it may have gone back to its good slot on its own meanwhile (a boot loop): that
				// is a fallback, recorded fleet-wide with the appliance's reason, not a timeout.
				if (found.active !== memo.to) await noteFallback(ctx, found, memo.to!);
				if (found.active === found.good) {
					await run(ctx, sh`flotilla-slot revert`);
					ctx.log(`the appliance is on its good slot ${found.good}`);
					return;
				}
				ctx.log(`slot ${found.active} is not committed: back to slot ${found.good}`);
				await run(ctx, sh`flotilla-slot revert`);
				await rebootAndWait(ctx);
				const back = await report(ctx);
				if (back.active !== back.good) throw new StepFailed(`still on slot ${back.active} after reverting`);
				ctx.log(`back on the good slot ${back.good}`);
			}
		}
	],

	/**
	 * After the console stopped mid-task: before the reboot nothing on the active slot changed, so the task runs
	 * again (the upload resumes). After it, the appliance says what happened: committed (done), fell back on its
	 * own (recorded, rolled back), or booted on the new slot and waiting: the gate decides now.
	 */
	async inspect(ctx) {
		const memo = memoOf(ctx);
		if (!memo.rebootIssued) return 'restart';
		const found = await report(ctx);
		const intended = memo.to!;
		if (found.active === intended && found.good === intended) {
			memo.committed = true;
			return 'completed';
		}
		if (found.active !== intended) {
			await checkBootedSlot(ctx, intended).catch(() => undefined);
			return 'rollback';
		}
		await mark(ctx, 'verifying_health');
		const gate = await run(ctx, sh`flotilla-slot commit`, { deadlineMs: 300_000, allowFailure: true });
		await report(ctx);
		if (gate.exitCode === 0) {
			memo.committed = true;
			return 'completed';
		}
		return 'rollback';
	},

	async finished(end) {
		releaseConnection(end.task.id);
		const memo = end.memo as Memo;
		// Failing before the reboot changed nothing the appliance runs: that is `failed`, not a rollback.
		const state: ApplianceUpdateState = end.state === 'rolled_back' && !memo.rebootIssued ? 'failed' : end.state;
		await recordUpdate(
			{
				taskId: end.task.id,
				runId: end.task.runId,
				nodeId: end.node.id,
				nodeName: end.node.name,
				imageId: end.params.image_id,
				rolloutId: end.params.rollout_id ?? null
			},
			state,
			// A fallback says why the update ended, whichever step noticed it (a reboot deadline that ran out while
			// the appliance looped back to its good slot is not a timeout).
			memo.fallback
				? {
						error: `the appliance fell back to slot ${memo.from} on its own: ${memo.fallback}`,
						fallback: memo.fallback
					}
				: { error: end.error }
		);
	}
};
