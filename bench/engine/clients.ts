// SSE clients in a process of their own, so that reading 100 streams does not take the console's CPU.
// Usage: node bench/engine/clients.ts; env URL, CLIENTS. Prints `connected` once every stream is open, then
// on `finish <commits file> <last event id>` waits for every client to receive that event and prints
// `latency <json>`.
import { request, Agent } from 'node:http';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const url = process.env.URL!;
const clientCount = Number(process.env.CLIENTS);
const now = () => performance.timeOrigin + performance.now();

interface Client {
	ids: number[];
	times: number[];
	closed: boolean;
}

const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
const clients: Client[] = [];
let opened = 0;

for (let i = 0; i < clientCount; i++) {
	const client: Client = { ids: [], times: [], closed: false };
	clients.push(client);
	const req = request(url, { agent, headers: { accept: 'text/event-stream' } }, (res) => {
		if (res.statusCode !== 200) throw new Error(`client ${i}: HTTP ${res.statusCode}`);
		let text = '';
		res.setEncoding('utf8');
		res.on('data', (chunk: string) => {
			// One timestamp per chunk: the moment the bytes reached this process.
			const t = now();
			text += chunk;
			let end;
			while ((end = text.indexOf('\n\n')) >= 0) {
				const block = text.slice(0, end);
				text = text.slice(end + 2);
				if (block.startsWith('retry:')) {
					if (++opened === clientCount) process.stdout.write('connected\n');
				} else if (block.startsWith('id: ')) {
					client.ids.push(parseInt(block.slice(4), 10));
					client.times.push(t);
				}
			}
		});
		res.on('close', () => (client.closed = true));
	});
	req.on('error', (err) => {
		throw err;
	});
	req.end();
}

function percentile(sorted: Float64Array, p: number): number {
	return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
	const [cmd, file, last] = line.split(' ');
	if (cmd !== 'finish') continue;
	const lastId = Number(last);
	const until = Date.now() + 60_000;
	while (clients.some((c) => !c.closed && (c.ids.at(-1) ?? 0) < lastId) && Date.now() < until) {
		await new Promise((r) => setTimeout(r, 20));
	}
	const flat = JSON.parse(readFileSync(file!, 'utf8')) as number[];
	const committed = new Map<number, number>();
	for (let i = 0; i < flat.length; i += 2) committed.set(flat[i]!, flat[i + 1]!);
	const latencies: number[] = [];
	let complete = 0;
	let ordered = 0;
	let dropped = 0;
	for (const c of clients) {
		let seen = 0;
		let inOrder = true;
		for (let i = 0; i < c.ids.length; i++) {
			if (i > 0 && c.ids[i]! <= c.ids[i - 1]!) inOrder = false;
			const at = committed.get(c.ids[i]!);
			if (at === undefined) continue;
			seen++;
			latencies.push(c.times[i]! - at);
		}
		if (seen === committed.size) complete++;
		if (inOrder) ordered++;
		if (c.closed) dropped++;
	}
	const sorted = Float64Array.from(latencies).sort();
	const result = {
		samples: sorted.length,
		events: committed.size,
		complete,
		ordered,
		dropped,
		p50: percentile(sorted, 50),
		p99: percentile(sorted, 99),
		max: sorted.at(-1),
		min: sorted[0]
	};
	process.stdout.write(`latency ${JSON.stringify(result)}\n`);
	process.exit(0);
}
