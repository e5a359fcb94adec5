import { expect } from 'vitest';
import { getRun } from '../../src/lib/server/engine/runs';
import type { RunState } from '../../src/lib/server/db/schema';
import type { EngineEvent } from '../../src/lib/server/engine/events';

/** Polls a run until it reaches one of `states`; fails the test with the run's last state otherwise. */
export async function waitForRun(id: string, states: RunState[], timeoutMs = 30_000) {
	const until = Date.now() + timeoutMs;
	for (;;) {
		const run = await getRun(id);
		if (states.includes(run.state) && (run.state === 'paused' || run.endedAt)) return run;
		if (Date.now() > until) {
			expect.fail(`run ${run.number} is ${run.state} (${JSON.stringify(run.counts)}), expected ${states.join('/')}`);
		}
		await new Promise((r) => setTimeout(r, 100));
	}
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | null | false>, timeoutMs = 20_000) {
	const until = Date.now() + timeoutMs;
	for (;;) {
		const v = await probe();
		if (v) return v;
		if (Date.now() > until) expect.fail(`timed out waiting for ${what}`);
		await new Promise((r) => setTimeout(r, 100));
	}
}

/**
 * Reads an engine event stream (as an SSE client would), handing each event to `onEvent` until it returns
 * true or the stream ends; then disconnects.
 */
export async function readEventStream(
	stream: ReadableStream<Uint8Array>,
	abort: AbortController,
	onEvent: (e: EngineEvent) => boolean
): Promise<void> {
	const reader = stream.getReader();
	const decoder = new TextDecoder();
	let text = '';
	let stop = false;
	while (!stop) {
		const { value, done } = await reader.read();
		if (done) break;
		text += decoder.decode(value, { stream: true });
		let end;
		while (!stop && (end = text.indexOf('\n\n')) >= 0) {
			const block = text.slice(0, end);
			text = text.slice(end + 2);
			const data = /^data: (.*)$/m.exec(block)?.[1];
			if (data) stop = onEvent(JSON.parse(data) as EngineEvent);
		}
	}
	abort.abort();
	await reader.cancel();
}
