import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
	path: string;
	headers: IncomingMessage['headers'];
	body: string;
}

/**
 * A local HTTP receiver for outbound requests (webhooks): on 127.0.0.1, a port of its own. `answer` decides
 * per request; returning undefined leaves the request hanging (a dead endpoint) until the receiver closes.
 */
export async function startReceiver(
	answer: (r: Received, nth: number) => { status: number; body?: string; headers?: Record<string, string> } | undefined
): Promise<{ url: string; received: Received[]; open: () => number; close: () => Promise<void> }> {
	const received: Received[] = [];
	const hanging = new Set<ServerResponse>();
	const server: Server = createServer((req, res) => {
		const chunks: Buffer[] = [];
		req.on('data', (c: Buffer) => chunks.push(c));
		req.on('end', () => {
			const r = { path: req.url ?? '/', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
			received.push(r);
			const a = answer(r, received.filter((x) => x.path === r.path).length);
			if (!a) {
				hanging.add(res);
				res.on('close', () => hanging.delete(res));
				return;
			}
			res.writeHead(a.status, { 'content-type': 'text/plain', ...a.headers }).end(a.body ?? '');
		});
	});
	await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
	const { port } = server.address() as AddressInfo;
	return {
		url: `http://127.0.0.1:${port}`,
		received,
		open: () => hanging.size,
		close: async () => {
			for (const res of hanging) res.destroy();
			server.closeAllConnections();
			await new Promise<void>((resolve) => server.close(() => resolve()));
		}
	};
}
