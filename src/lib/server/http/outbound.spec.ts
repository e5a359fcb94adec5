import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startReceiver } from '../../../../tests/support/receiver';
import { isPrivateAddress, postTo, resolveTarget, TargetRefused } from './outbound';

describe('outbound targets', () => {
	it.each([
		'127.0.0.1',
		'127.8.9.10',
		'169.254.169.254',
		'10.1.2.3',
		'172.16.0.1',
		'172.31.255.255',
		'192.168.1.1',
		'0.0.0.0',
		'::1',
		'::',
		'fe80::1',
		'fc00::1',
		'fd12:3456::1',
		'::ffff:127.0.0.1',
		'::ffff:10.0.0.1'
	])('%s is a private address', (a) => {
		expect(isPrivateAddress(a)).toBe(true);
	});

	it.each(['8.8.8.8', '172.32.0.1', '192.169.0.1', '2001:4860:4860::8888', '::ffff:8.8.8.8'])('%s is public', (a) => {
		expect(isPrivateAddress(a)).toBe(false);
	});

	it.each([
		'http://127.0.0.1/hook',
		'http://169.254.169.254/latest/meta-data',
		'https://10.0.0.5/x',
		'http://[::1]:8080/',
		'http://[fe80::1]/',
		'http://192.168.0.10/',
		// A name resolving to loopback is refused as its address is.
		'http://localhost:9/'
	])('refuses %s unless private targets are allowed', async (url) => {
		await expect(resolveTarget(url, { allowPrivate: false })).rejects.toThrow(TargetRefused);
		await expect(resolveTarget(url, { allowPrivate: false })).rejects.toThrow(/loopback, link-local or private/);
		const allowed = await resolveTarget(url, { allowPrivate: true });
		expect(isPrivateAddress(allowed.address)).toBe(true);
	});

	it.each(['ftp://example.com/', 'file:///etc/passwd', 'gopher://x/', 'not a url', 'http://user:pw@8.8.8.8/'])(
		'refuses %s whatever is allowed',
		async (url) => {
			await expect(resolveTarget(url, { allowPrivate: true })).rejects.toThrow(TargetRefused);
		}
	);

	it('accepts a public address as given, without a lookup', async () => {
		const t = await resolveTarget('https://8.8.8.8/hook', { allowPrivate: false });
		expect(t).toMatchObject({ address: '8.8.8.8', family: 4 });
	});
});

describe('posting to a target', () => {
	let inner: Awaited<ReturnType<typeof startReceiver>>;
	let outer: Awaited<ReturnType<typeof startReceiver>>;
	beforeAll(async () => {
		inner = await startReceiver(() => ({ status: 200, body: 'inner' }));
		outer = await startReceiver((r) =>
			r.path === '/redirect'
				? { status: 302, headers: { location: `${inner.url}/secret` } }
				: r.path === '/hang'
					? undefined
					: { status: 201, body: 'x'.repeat(10_000) }
		);
	});
	afterAll(async () => {
		await inner.close();
		await outer.close();
	});

	it('connects to the checked address, whatever the name resolves to now', async () => {
		// The host name would not resolve at all: the pinned address is used, not a second lookup.
		const target = await resolveTarget(`${outer.url}/pinned`, { allowPrivate: true });
		target.url = new URL(`http://no-such-host.invalid:${target.url.port}/pinned`);
		const answer = await postTo(target, '{}', {}, 5_000);
		expect(answer.status).toBe(201);
		expect(answer.body.length).toBeLessThanOrEqual(2_048);
		expect(outer.received.at(-1)?.headers.host).toContain('no-such-host.invalid');
	});

	it('does not follow a redirect (to a private address or any other)', async () => {
		const answer = await postTo(await resolveTarget(`${outer.url}/redirect`, { allowPrivate: true }), '{}', {}, 5_000);
		expect(answer.status).toBe(302);
		expect(inner.received).toHaveLength(0);
	});

	it('gives up on a receiver that does not answer within the deadline', async () => {
		const target = await resolveTarget(`${outer.url}/hang`, { allowPrivate: true });
		await expect(postTo(target, '{}', {}, 300)).rejects.toThrow('no answer within 300 ms');
	});
});
