import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { db, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { GET as getAudit } from '../../src/routes/api/audit/+server';
import { backends } from '../support/databases';

const ROWS = 100_000;
/** What the export may keep alive on the heap at any moment: a few pages, far below the range's own size. */
const HEAP_BOUND_BYTES = 32 * 1024 * 1024;

// The live heap, not garbage awaiting collection, is what an export must bound: collect before each sample.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const liveHeap = () => {
	gc();
	return process.memoryUsage().heapUsed;
};

const get = (query: string) => {
	const url = new URL(`http://console/api/audit?${query}`);
	return getAudit({ request: new Request(url), url } as never);
};

describe.each(backends)('audit export on $name', ({ open }) => {
	let handle: DatabaseHandle;
	beforeAll(async () => {
		handle = await open();
		useDatabase(handle);
		// A day of rows ending a minute ago, each with some detail to weigh on the export.
		await db().execute(sql`
			insert into audit_log (at, actor_name, via, action, target_type, target_id, result, details)
			select now() - interval '1 minute' - (g || ' seconds')::interval, 'exporter', 'system',
				'export.row', 'row', g::text, 'ok', jsonb_build_object('n', g, 'note', repeat('x', 400))
			from generate_series(1, ${ROWS}) g`);
	}, 120_000);
	afterAll(async () => {
		useDatabase(undefined);
		await handle?.close();
	});

	it(`streams all ${ROWS} rows of a range as NDJSON, its heap growth bounded`, async () => {
		const res = await get(
			`format=ndjson&action=export.&since=${encodeURIComponent(new Date(Date.now() - 2 * 86_400_000).toISOString())}`
		);
		expect(res.status).toBe(200);
		expect(res.headers.get('content-type')).toMatch(/^application\/x-ndjson/);
		const base = liveHeap();
		let peak = 0;
		let lines = 0;
		let bytes = 0;
		let first: { action: string; target_id: string } | undefined;
		let last: { target_id: string } | undefined;
		let partial = '';
		const decoder = new TextDecoder();
		const reader = res.body!.getReader();
		for (;;) {
			const { value, done } = await reader.read();
			if (done) break;
			bytes += value.length;
			const text = partial + decoder.decode(value, { stream: true });
			const split = text.split('\n');
			partial = split.pop()!;
			for (const line of split) {
				const row = JSON.parse(line);
				first ??= row;
				last = row;
				lines++;
			}
			peak = Math.max(peak, liveHeap() - base);
		}
		expect(partial).toBe('');
		expect(lines).toBe(ROWS);
		// Last written first, as the JSON pages are (by id: generate_series wrote row 1 first).
		expect(first).toMatchObject({ action: 'export.row', target_id: String(ROWS) });
		expect(last!.target_id).toBe('1');
		// The export is larger than the bound: had it been gathered in memory, the bound would not hold.
		expect(bytes).toBeGreaterThan(HEAP_BOUND_BYTES);
		expect(peak).toBeLessThan(HEAP_BOUND_BYTES);
	}, 180_000);

	it('refuses an unknown format, naming the field', async () => {
		const res = await get('format=csv');
		expect(res.status).toBe(400);
		expect((await res.json()).error.fields).toEqual({ format: 'must be json or ndjson' });
	});
});
