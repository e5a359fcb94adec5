/**
 * An appliance image pushed by the console's A/B flow against `scp` of the same file to the same place, on the
 * same real sshd appliances, in one run: a 512 MiB image to one appliance and to every bench appliance at once
 * (20 by default, from 127.0.1.150). Run it with `npm run bench:appliances`; bench/README.md says what each row measures.
 */
import { createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { and, asc, eq } from 'drizzle-orm';
import { declareImage, receiveChunk, useImageStore } from '../src/lib/server/appliances/images';
import { startPush } from '../src/lib/server/appliances/runs';
import { systemActor } from '../src/lib/server/audit';
import { db } from '../src/lib/server/db';
import { events, runs, tasks, taskSteps, type ApplianceImage } from '../src/lib/server/db/schema';
import { useReleaseKeys } from '../src/lib/server/releases/keys';
import { createRelease } from '../src/lib/server/releases/releases';
import { ed25519Signature, keyIdOf } from '../src/lib/server/releases/signing';
import { connect } from '../src/lib/server/ssh/connection';
import { uploadFile } from '../src/lib/server/ssh/sftp';
import { sh } from '../src/lib/server/ssh/shell';
import { startTestbed, type Testbed, type TestHost } from '../tests/testbed/testbed.ts';
import { startBenchConsole } from './console';
import {
	cpuMsOf,
	cpusLine,
	fixed,
	markdownTable,
	measureRoundRobin,
	median,
	medianAndRuns,
	packageVersion,
	publishSection,
	secondsSince,
	sha256Of,
	startPostgres,
	stopPostgres,
	tool,
	toolSetup,
	toolVersion,
	waitForAddresses,
	writeRandomFile,
	type Row,
	type ToolSetup,
	type Variant
} from './common';
import { testbedTarget } from '../tests/support/testbed-nodes';

const command = 'npm run bench:appliances';
const sectionHeading = '## Appliances: image push';
const firstHost = 150;
/** `BENCH_APPLIANCES`: how many appliances the "at once" rows push to (the issue's figure is 20). */
const fleetSize = Number(process.env.BENCH_APPLIANCES ?? 20);
/** `BENCH_IMAGE_MIB` shrinks the image to try the script out; the recorded figures are for 512. */
const imageMib = Number(process.env.BENCH_IMAGE_MIB ?? 512);
const imageBytes = imageMib * 2 ** 20;
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const runTimeoutMs = 15 * 60_000;

interface PushRow extends Row {
	tool: string;
	what: string;
	/** How many appliances the row sends the image to at once. */
	appliances: number;
	/** The row this one's throughput is compared with (scp for the same appliances), or none. */
	against?: PushRow;
}

const row = (tool: string, what: string, appliances: number, against?: PushRow): PushRow => ({
	tool,
	what,
	appliances,
	against,
	samples: []
});

/** The slot an appliance's next image goes to (the one it does not run), read from its own files. */
async function standbyOf(bed: Testbed, host: TestHost): Promise<'a' | 'b'> {
	return (await bed.slotState(host)).active === 'a' ? 'b' : 'a';
}

/**
 * The variant, started once the page cache is written back (`sync`): a push to 20 leaves 10 GiB for the disk,
 * and whichever tool ran next was slowed by it (scp to 20 took 23–24 s first and 31–42 s right after
 * uploadFile's 10 GiB, docs/benchmarks.md), so without this the order of the rows decided the ratios.
 */
function afterSync<R extends Row>(variant: Variant<R>): Variant<R> {
	return {
		...variant,
		async run() {
			await tool('sync', []);
			return variant.run();
		}
	};
}

/** The standby slot's image file on an appliance, where every tool here writes the image. */
async function standbySlotFile(bed: Testbed, host: TestHost): Promise<string> {
	return `/boot/flotilla/slot-${await standbyOf(bed, host)}.img`;
}

/** Where one appliance's time went in a push, from the engine's steps and the update's progress events. */
interface PushTimes {
	/** The `upload` step: SFTP to the standby slot, then the appliance's sha256sum checked against the console's. */
	uploadStep: number;
	/** The first `uploading` event to the one whose bytes reached the total (before the checksum). */
	transfer: { from: number; to: number };
}

async function pushTimes(runId: string): Promise<PushTimes[]> {
	const steps = await db()
		.select({ task: tasks.id, startedAt: taskSteps.startedAt, endedAt: taskSteps.endedAt })
		.from(taskSteps)
		.innerJoin(tasks, eq(tasks.id, taskSteps.taskId))
		.where(and(eq(tasks.runId, runId), eq(taskSteps.name, 'upload'), eq(taskSteps.phase, 'do')));
	const progress = await db()
		.select({ task: events.taskId, at: events.at, data: events.data })
		.from(events)
		.where(and(eq(events.runId, runId), eq(events.type, 'appliance.update')))
		.orderBy(asc(events.id));
	return steps.map((s) => {
		const mine = progress.filter((e) => e.task === s.task && e.data.state === 'uploading');
		const first = mine[0];
		const full = mine.find((e) => e.data.bytes === e.data.total);
		if (!first || !full || !s.endedAt) throw new Error(`run ${runId}: no complete upload recorded for a task`);
		return {
			uploadStep: (s.endedAt.getTime() - s.startedAt.getTime()) / 1000,
			transfer: { from: first.at.getTime(), to: full.at.getTime() }
		};
	});
}

/**
 * The console's A/B flow on `hosts` at once (`POST /api/appliances/push`, no window): upload to the standby
 * slot, verify on the appliance, reboot, gate, commit. Every appliance must end on its new slot, committed.
 */
function flotillaPush(
	bed: Testbed,
	hosts: TestHost[],
	image: ApplianceImage,
	cpu: number[],
	spread: UploadSpread[]
): Variant<PushRow> {
	const n = hosts.length;
	const whole = row('Flotilla', 'the whole A/B update: push to the run ended succeeded', n);
	const upload = row('Flotilla', "`upload` step: SFTP to the standby slot + the appliance's sha256sum of it", n);
	const transfer = row('Flotilla', 'transfer: the SFTP upload until its progress reached the total', n);
	return {
		label: `flotilla push to ${n}`,
		rows: [whole, upload, transfer],
		note: () => {
			const last = spread.at(-1);
			return `console CPU ${fixed(cpu.at(-1) ?? 0)} s${last && n > 1 ? `, uploads began over ${fixed(last.startsOver)} s, each took ${fixed(last.each)} s (median)` : ''}`;
		},
		async run() {
			const expected = await Promise.all(hosts.map((h) => standbyOf(bed, h)));
			const cpuBefore = await cpuMsOf(process.pid);
			const start = Date.now();
			const pushed = await startPush(systemActor, {
				image_id: image.id,
				nodes: hosts.map((h) => h.name),
				concurrency: n,
				window: 'ignore'
			});
			const until = Date.now() + runTimeoutMs;
			for (;;) {
				const [r] = await db()
					.select({ state: runs.state, endedAt: runs.endedAt })
					.from(runs)
					.where(eq(runs.id, pushed.id));
				if (r!.endedAt) {
					if (r!.state !== 'succeeded') {
						const failed = await db()
							.select({ node: tasks.nodeName, state: tasks.state, error: tasks.error })
							.from(tasks)
							.where(eq(tasks.runId, pushed.id));
						throw new Error(
							`the push ended ${r!.state}: ${failed.map((t) => `${t.node} ${t.state}: ${t.error}`).join('; ')}`
						);
					}
					break;
				}
				if (Date.now() > until) throw new Error(`the push is still ${r!.state} after ${runTimeoutMs} ms`);
				await new Promise((r) => setTimeout(r, 50));
			}
			const seconds = (Date.now() - start) / 1000;
			cpu.push(((await cpuMsOf(process.pid)) - cpuBefore) / 1000);
			for (const [i, h] of hosts.entries()) {
				const s = await bed.slotState(h);
				if (s.active !== expected[i] || s.good !== expected[i]) {
					throw new Error(`${h.name} is on slot ${s.active} (good ${s.good}), not the new slot ${expected[i]}`);
				}
			}
			const times = await pushTimes(pushed.id);
			const firstFrom = Math.min(...times.map((t) => t.transfer.from));
			const transferred = (Math.max(...times.map((t) => t.transfer.to)) - firstFrom) / 1000;
			spread.push({
				startsOver: (Math.max(...times.map((t) => t.transfer.from)) - firstFrom) / 1000,
				each: median(times.map((t) => (t.transfer.to - t.transfer.from) / 1000))
			});
			return [seconds, Math.max(...times.map((t) => t.uploadStep)), transferred];
		}
	};
}

/** How the uploads of one push to several appliances lay in time (the flow starts each when its task gets there). */
interface UploadSpread {
	/** From the first upload's start to the last one's. */
	startsOver: number;
	/** One appliance's transfer, median over the push's appliances. */
	each: number;
}

/**
 * The SFTP upload the flow uses (`uploadFile`), alone: a connection to each appliance, then the image to its
 * standby slot, every appliance at once, with no engine, steps or other appliances' checks alongside. Timed
 * from before connecting, as scp is; the transfer until the last progress reached the total, the whole upload
 * until the appliance's sha256sum of it matched.
 */
function sftpUpload(bed: Testbed, hosts: TestHost[], image: ApplianceImage, localFile: string): Variant<PushRow> {
	const n = hosts.length;
	const whole = row(
		'Flotilla SSH layer',
		"`uploadFile` alone: connect, SFTP to the standby slot, the appliance's sha256sum",
		n
	);
	const transfer = row(
		'Flotilla SSH layer',
		'`uploadFile` alone: connect, then SFTP until its progress reached the total',
		n
	);
	return {
		label: `uploadFile alone to ${n}`,
		rows: [whole, transfer],
		async run() {
			const paths = await Promise.all(hosts.map((h) => standbySlotFile(bed, h)));
			const start = performance.now();
			let transferred = 0;
			await Promise.all(
				hosts.map(async (h, i) => {
					const conn = await connect(testbedTarget(bed, h));
					try {
						await uploadFile(conn, localFile, paths[i]!, {
							resume: false,
							sha256: image.sha256,
							onProgress: (p) => {
								if (p.bytes === p.total) transferred = Math.max(transferred, secondsSince(start));
							}
						});
					} finally {
						conn.close();
					}
				})
			);
			return [secondsSince(start), transferred];
		}
	};
}

/** `scp` of the image file to each appliance's standby slot at once, as an operator would copy it by hand. */
function scpVariant(setup: ToolSetup, hosts: TestHost[], localFile: string, withSum: boolean): Variant<PushRow> {
	const r = row(
		'scp',
		withSum
			? 'scp to the standby slot, then `ssh sha256sum` of it, checked against a local sha256 computed alongside'
			: 'scp (SFTP protocol, default algorithms) to the standby slot',
		hosts.length
	);
	return {
		label: `scp${withSum ? ' + sha256sum' : ''} to ${hosts.length}`,
		rows: [r],
		async run() {
			const paths = await Promise.all(hosts.map((h) => standbySlotFile(setup.bed, h)));
			const start = performance.now();
			const ours = withSum ? sha256Of(localFile) : Promise.resolve('');
			await Promise.all(
				hosts.map(async (h, i) => {
					const target = `root@${h.address}`;
					await tool('scp', ['-q', ...setup.sshOptions, localFile, `${target}:${paths[i]}`]);
					if (!withSum) return;
					const theirs = await tool('ssh', [...setup.sshOptions, target, sh`sha256sum -- ${paths[i]!}`.script]);
					if (!theirs.startsWith(await ours)) throw new Error(`scp to ${h.name}: sha256 mismatch`);
				})
			);
			await ours;
			const seconds = secondsSince(start);
			for (const [i, h] of hosts.entries()) {
				const size = (await stat(join(h.root, paths[i]!))).size;
				if (size !== imageBytes) throw new Error(`scp to ${h.name} left ${size} bytes, not ${imageBytes}`);
			}
			return [seconds];
		}
	};
}

/** The console's CPU seconds per push over the push's wall time (medians): 1 is one CPU busy all along. */
const cpuShare = (cpu: number[], whole: PushRow) => median(cpu) / median(whole.samples);

function table(rows: PushRow[]): string {
	const mibs = (r: PushRow) => (imageMib * r.appliances) / median(r.samples);
	return markdownTable(
		[
			{ heading: 'appliances', right: true },
			{ heading: 'tool' },
			{ heading: 'what is timed' },
			{ heading: 'median (s)', right: true },
			{ heading: 'runs (s)' },
			{ heading: 'MiB/s (all appliances)', right: true },
			{ heading: 'throughput ÷ scp', right: true }
		],
		rows.map((r) => [
			String(r.appliances),
			r.tool,
			r.what,
			...medianAndRuns(r.samples),
			fixed(mibs(r), 1),
			r.against ? fixed(median(r.against.samples) / median(r.samples)) : '—'
		])
	);
}

export async function benchmarkAppliances(log: (line: string) => void = console.log): Promise<string> {
	const started = new Date();
	const dir = await mkdtemp(join(tmpdir(), 'flotilla-bench-appliances-'));
	// Apart from `dir`: the server runs as the postgres user, which cannot enter root's private folders.
	const pgDir = await mkdtemp(join(tmpdir(), 'flotilla-bench-pg-'));
	let bed: Testbed | undefined;
	let benchConsole: Awaited<ReturnType<typeof startBenchConsole>> | undefined;
	try {
		await waitForAddresses(firstHost, fleetSize, log);
		const loadBefore = loadavg();
		log(`starting ${fleetSize} appliances from 127.0.1.${firstHost} and a throwaway PostgreSQL`);
		const [testbed, { url }] = await Promise.all([startTestbed({ hosts: fleetSize, firstHost }), startPostgres(pgDir)]);
		bed = testbed;
		const setup = await toolSetup(bed, dir);

		const signingKey = generateKeyPairSync('ed25519').privateKey;
		const pub = createPublicKey(signingKey);
		// Each appliance trusts the release key from its installation on, and runs the service its gate checks.
		const pem = pub.export({ format: 'pem', type: 'spki' }).toString();
		for (const h of bed.hosts) {
			await mkdir(join(h.root, 'etc/flotilla/release-keys'), { recursive: true });
			await writeFile(join(h.root, 'etc/flotilla/release-keys/release.pem'), pem);
			await tool('ssh', [...setup.sshOptions, `root@${h.address}`, 'systemctl start appliance']);
		}
		benchConsole = await startBenchConsole(url, bed, {
			node: { kind: 'appliance' },
			configure: () => {
				useImageStore(join(dir, 'images'));
				useReleaseKeys({ ed25519: [{ id: keyIdOf(pub), key: pub }] });
			}
		});

		log(`a signed release with a ${imageMib} MiB image of random data, received by the console`);
		const localFile = join(dir, 'image.img');
		await writeRandomFile(localFile, imageBytes);
		const sha256 = await sha256Of(localFile);
		const manifest: Record<string, unknown> = {
			version: '2.0.0',
			sha: sha256.slice(0, 40),
			channel: 'stable',
			migrations_required: false,
			breaking_changes: null,
			released_at: started.toISOString()
		};
		manifest.signature = ed25519Signature(manifest, signingKey);
		const release = await createRelease(systemActor, manifest);
		const declared = await declareImage(systemActor, {
			release_id: release.id,
			sha256,
			size: imageBytes,
			signature: sign(null, Buffer.from(sha256), signingKey).toString('hex')
		});
		const image = await receiveChunk(
			systemActor,
			declared.id,
			0,
			Readable.toWeb(createReadStream(localFile, { highWaterMark: 1 << 20 })) as ReadableStream<Uint8Array>
		);
		if (image.state !== 'complete') throw new Error(`the console holds the image ${image.state}`);

		const one = [bed.hosts[0]!];
		const all = bed.hosts;
		const cpuOne: number[] = [];
		const cpuAll: number[] = [];
		const spread: UploadSpread[] = [];
		const variants = [
			flotillaPush(bed, one, image, cpuOne, []),
			sftpUpload(bed, one, image, localFile),
			scpVariant(setup, one, localFile, false),
			scpVariant(setup, one, localFile, true),
			flotillaPush(bed, all, image, cpuAll, spread),
			sftpUpload(bed, all, image, localFile),
			scpVariant(setup, all, localFile, false),
			scpVariant(setup, all, localFile, true)
		].map(afterSync);
		// Each Flotilla row against the scp row for the same appliances that does the same work.
		for (const k of [0, 4]) {
			const [, upload, transfer] = variants[k]!.rows;
			const [layerWhole, layerTransfer] = variants[k + 1]!.rows;
			transfer!.against = layerTransfer!.against = variants[k + 2]!.rows[0];
			upload!.against = layerWhole!.against = variants[k + 3]!.rows[0];
		}
		log(`${imageMib} MiB to 1 appliance and to ${fleetSize} at once, ${rounds} rounds`);
		await measureRoundRobin(variants, rounds, log, () => {
			cpuOne.length = 0;
			cpuAll.length = 0;
			spread.length = 0;
		});
		const loadAfter = loadavg();

		const rows = variants.flatMap((v) => v.rows);
		const ratio = (r: PushRow) => median(r.against!.samples) / median(r.samples);
		const flowTransfer = (k: number) => variants[k]!.rows[2]!;
		const layerTransfer = (k: number) => variants[k + 1]!.rows[1]!;
		const allMibs = (r: PushRow) => fixed((imageMib * fleetSize) / median(r.samples), 1);
		const section = [
			sectionHeading,
			'',
			`Produced by \`${command}\` (bench/appliances.ts) on ${started.toISOString()}: ${fleetSize} appliances (real OpenSSH sshd on 127.0.1.${firstHost}–${firstHost + fleetSize - 1}, each with the slot helper appliance/flotilla-slot and the release key installed), the console's engine on a throwaway PostgreSQL, a ${imageMib} MiB image of random data; every tool on the same appliances in one run, one warm-up run of each row, then ${rounds} measured runs taken round-robin, each started once \`sync\` had written the page cache back; the median is shown.`,
			'',
			cpusLine(),
			`- Node ${process.version}, ssh2 ${await packageVersion('ssh2')}, ${await toolVersion('ssh', ['-V'])} (scp and the appliances' sshd)`,
			`- Load average (1 min) ${fixed(loadBefore[0]!)} before the run, ${fixed(loadAfter[0]!)} after`,
			'',
			"Flotilla: `POST /api/appliances/push`'s function with no window, every appliance at once; the run's A/B flow uploads the image to each appliance's standby slot over SFTP (uploadFile: 254 KiB writes, 16 in flight, then the appliance's sha256sum compared with the image's signed sha256), then the appliance verifies sha256 and signature itself, reboots into the slot, runs the health gate and commits. scp copies the same file to the same standby slot file; each scp row includes connecting, the Flotilla rows other than the whole update run on the task's open connection (the transfer from its first `uploading` state to the progress event that reached the total). Throughput ÷ scp is scp's time ÷ the row's (above 1, Flotilla moved the bytes faster): the transfer against scp alone, the upload step against scp followed by a remote sha256sum. The SSH-layer rows are the flow's upload (`uploadFile`) alone, timed like scp from before connecting: no engine, no other steps, and no other appliance's checks alongside.",
			'',
			table(rows),
			'',
			`- One appliance: SFTP throughput ${fixed(ratio(flowTransfer(0)))} of scp's in the A/B flow, ${fixed(ratio(layerTransfer(0)))} with \`uploadFile\` alone (aim: at least 0.90).`,
			`- ${fleetSize} at once: ${fixed(ratio(layerTransfer(4)))} of scp's with \`uploadFile\` alone (${allMibs(layerTransfer(4))} MiB/s in all); ${fixed(ratio(flowTransfer(4)))} in the A/B flow (${allMibs(flowTransfer(4))} MiB/s), whose uploads began over ${fixed(median(spread.map((x) => x.startsOver)))} s and took ${fixed(median(spread.map((x) => x.each)))} s each (medians), alongside the checks of the appliances whose upload had ended.`,
			`- The console's process (one Node thread for its JavaScript) used ${fixed(median(cpuOne))} CPU s per push to one appliance, ${fixed(cpuShare(cpuOne, variants[0]!.rows[0]!))} of one CPU over the push; ${fixed(median(cpuAll))} CPU s per push to ${fleetSize}, ${fixed(cpuShare(cpuAll, variants[4]!.rows[0]!))} of one CPU. The machine has ${availableParallelism()} CPUs, shared by the console, the appliances' sshd and sha256sum, and scp.`,
			''
		];
		return await publishSection(sectionHeading, section, log);
	} finally {
		await benchConsole?.stop();
		useReleaseKeys(undefined);
		useImageStore(undefined);
		await stopPostgres(pgDir).catch((error: Error) =>
			log(`could not stop the throwaway PostgreSQL in ${pgDir}: ${error.message}`)
		);
		await bed?.stop();
		await rm(dir, { recursive: true, force: true });
	}
}
