import { describe, expect, it } from 'vitest';
import { GroupCommit } from './group-commit';

describe('GroupCommit', () => {
	it('writes what arrives in one turn as one batch, and what arrives during a write as the next', async () => {
		const batches: number[][] = [];
		let release: () => void = () => {};
		const gc = new GroupCommit<number, string>(async (items) => {
			batches.push(items);
			if (batches.length === 1) await new Promise<void>((r) => (release = r));
			return items.map((i) => `r${i}`);
		});
		const first = [1, 2, 3].map((i) => gc.add(i));
		await new Promise((r) => setImmediate(r));
		// The first batch is being written: these wait for it, then go together.
		const second = [4, 5].map((i) => gc.add(i));
		await new Promise((r) => setImmediate(r));
		expect(batches).toEqual([[1, 2, 3]]);
		release();
		expect(await Promise.all([...first, ...second])).toEqual(['r1', 'r2', 'r3', 'r4', 'r5']);
		expect(batches).toEqual([
			[1, 2, 3],
			[4, 5]
		]);
	});

	it('fails every caller of a batch that failed, and carries on with the next', async () => {
		let calls = 0;
		const gc = new GroupCommit<number, number>(async (items) => {
			calls++;
			if (calls === 1) throw new Error('database gone');
			return items.map((i) => i * 10);
		});
		const failed = [1, 2].map((i) => gc.add(i));
		const results = await Promise.allSettled(failed);
		expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
		expect((results[0] as PromiseRejectedResult).reason.message).toBe('database gone');
		expect(await gc.add(3)).toBe(30);
	});

	it('splits a crowd into batches of at most maxBatch', async () => {
		const sizes: number[] = [];
		const gc = new GroupCommit<number, number>(async (items) => {
			sizes.push(items.length);
			return items;
		}, 4);
		await Promise.all(Array.from({ length: 10 }, (_, i) => gc.add(i)));
		expect(sizes).toEqual([4, 4, 2]);
	});

	it('settled() waits for everything added before it, including what queued behind a batch in flight', async () => {
		const written: number[] = [];
		const gc = new GroupCommit<number, void>(async (items) => {
			await new Promise((r) => setTimeout(r, 5));
			written.push(...items);
			return items.map(() => undefined);
		});
		await gc.settled();
		void gc.add(1);
		await new Promise((r) => setImmediate(r));
		void gc.add(2);
		await gc.settled();
		expect(written).toEqual([1, 2]);
		void gc.add(3);
		await gc.settled();
		expect(written).toEqual([1, 2, 3]);
	});
});
