import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { connectionStatus, listNodes } from '../../src/lib/server/fleet/nodes';
import { startDemoFleet } from '../../src/lib/server/sim/demo-fleet';
import { freshPglite } from '../support/databases';

describe('the quick start demo fleet', () => {
	let handle: DatabaseHandle;
	const dataDir = mkdtempSync(path.join(tmpdir(), 'flotilla-demo-'));

	beforeAll(async () => {
		handle = await freshPglite();
		useDatabase(handle);
		useMasterKey(randomBytes(32));
	});
	afterAll(async () => {
		useMasterKey(undefined);
		useDatabase(undefined);
		await handle.close();
	});

	const states = async () => {
		const { items } = await listNodes({ limit: 500 });
		const counts: Record<string, number> = {};
		for (const n of items) counts[connectionStatus(n)] = (counts[connectionStatus(n)] ?? 0) + 1;
		return { items, counts };
	};

	it('registers 24 simulated nodes with pinned keys, in a realistic mix of states after a real check', async () => {
		const fleet = await startDemoFleet(dataDir);
		await fleet.checked;
		const { items, counts } = await states();
		expect(items).toHaveLength(24);
		expect(counts).toEqual({ reachable: 20, unreachable: 2, host_key_changed: 1, host_key_unknown: 1 });
		expect(items.filter((n) => n.kind === 'appliance')).toHaveLength(4);
		expect(items.filter((n) => n.controlPlane).map((n) => n.name)).toEqual(['app-01', 'app-02']);
		expect(items.every((n) => n.host === '127.0.0.1')).toBe(true);
		await fleet.stop();
	});

	it('comes back as the same fleet after a restart: same keys, same ports, no duplicates', async () => {
		const before = (await states()).items.map((n) => [n.name, n.port, n.hostKeyFingerprint]);
		const fleet = await startDemoFleet(dataDir);
		await fleet.checked;
		const after = await states();
		expect(after.items.map((n) => [n.name, n.port, n.hostKeyFingerprint])).toEqual(before);
		expect(after.counts.reachable).toBe(20);
		await fleet.stop();
	});
});
