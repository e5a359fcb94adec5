import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import type { SFTPWrapper } from 'ssh2';
import { SshError } from './errors';
import type { SshConnection } from './connection';
import { sh } from './shell';

export interface UploadProgress {
	bytes: number;
	total: number;
}

export interface UploadOptions {
	onProgress?: (p: UploadProgress) => void;
	/** Continue from the remote file's current size when it is a prefix-sized partial upload. */
	resume?: boolean;
	mode?: number;
	/** Deadline for the remote checksum. */
	checksumDeadlineMs?: number;
	/**
	 * The file's sha256 when the caller already holds it (an image checked when it arrived, and signed):
	 * what arrived is checked against it, and the upload does not hash the file on the console's thread
	 * alongside the transfer (a quarter of the console's CPU per image push, docs/benchmarks.md).
	 */
	sha256?: string;
}

export interface UploadResult {
	bytes: number;
	resumedFrom: number;
	sha256: string;
}

// SFTP answers each write before the next may be sent; keeping many writes in flight hides that round
// trip (a stream with one write at a time moved 3 MB/s on loopback). 254 KiB writes, 16 at a time, moved
// 512 MiB 1.55 times faster than 32 KiB × 64 (docs/benchmarks.md).
const CHUNK_BYTES = 254 * 1024;
const WRITES_IN_FLIGHT = 16;

function sftpCall<T>(fn: (cb: (err: Error | null | undefined, value: T) => void) => void): Promise<T> {
	return new Promise((resolve, reject) => fn((err, value) => (err ? reject(err) : resolve(value))));
}

async function writeInParallel(
	sftp: SFTPWrapper,
	localPath: string,
	remotePath: string,
	start: number,
	total: number,
	mode: number,
	onWritten: (bytes: number) => void
): Promise<void> {
	const local = await open(localPath, 'r');
	const handle = await sftpCall<Buffer>((cb) => sftp.open(remotePath, start > 0 ? 'r+' : 'w', { mode }, cb));
	let next = start;
	const worker = async () => {
		const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
		while (next < total) {
			const position = next;
			next += CHUNK_BYTES;
			const { bytesRead } = await local.read(buffer, 0, Math.min(CHUNK_BYTES, total - position), position);
			await sftpCall<void>((cb) => sftp.write(handle, buffer, 0, bytesRead, position, (err) => cb(err, undefined)));
			onWritten(bytesRead);
		}
	};
	try {
		await Promise.all(Array.from({ length: WRITES_IN_FLIGHT }, worker));
	} finally {
		await local.close();
		await sftpCall<void>((cb) => sftp.close(handle, (err) => cb(err, undefined))).catch(() => {});
	}
}

/**
 * Rejects when the SFTP channel closes. ssh2 leaves the callbacks of requests in flight uncalled when the
 * connection drops, so every wait on them is raced against this, or an upload would hang forever.
 */
function whenClosed(sftp: SFTPWrapper, name: string): Promise<never> {
	const closed = new Promise<never>((_, reject) => {
		sftp.once('close', () => reject(new SshError('disconnected', `The SFTP session with ${name} closed`)));
	});
	closed.catch(() => {});
	return closed;
}

function remoteSize(sftp: SFTPWrapper, path: string): Promise<number | null> {
	return new Promise((resolve) => sftp.stat(path, (err, st) => resolve(err ? null : st.size)));
}

async function localSha256(path: string): Promise<string> {
	const hash = createHash('sha256');
	await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), hash);
	return hash.digest('hex');
}

/** The node's own sha256 of a file: proof of what arrived, not of what we sent. */
export async function remoteSha256(conn: SshConnection, path: string, deadlineMs = 120_000): Promise<string> {
	const res = await conn.exec(sh`sha256sum -- ${path}`, { deadlineMs });
	const hex = /^([0-9a-f]{64})\s/.exec(res.stdout)?.[1];
	if (res.exitCode !== 0 || !hex)
		throw new SshError('protocol', `sha256sum failed on ${conn.name}: ${res.stderr.trim()}`);
	return hex;
}

/**
 * Uploads a file over SFTP with progress, resuming a partial upload from the remote file's size, then
 * checks the node's sha256 of the result against ours. A mismatch is an error, never a silent success.
 */
export async function uploadFile(
	conn: SshConnection,
	localPath: string,
	remotePath: string,
	options: UploadOptions = {}
): Promise<UploadResult> {
	const total = (await stat(localPath)).size;
	const expected = options.sha256 !== undefined ? Promise.resolve(options.sha256) : localSha256(localPath);
	// Awaited below; until then a failure of the upload must not leave this rejection unhandled.
	expected.catch(() => {});
	const sftp = await conn.sftp();
	const lost = whenClosed(sftp, conn.name);
	try {
		let offset = 0;
		if (options.resume !== false) {
			const size = await Promise.race([remoteSize(sftp, remotePath), lost]);
			// Writes are in flight in parallel, so a dropped upload may end with a few holes just below the
			// remote size: step back one window of writes. The checksum below catches anything else.
			if (size !== null && size <= total) offset = Math.max(0, size - CHUNK_BYTES * WRITES_IN_FLIGHT);
		}
		let sent = offset;
		options.onProgress?.({ bytes: sent, total });
		if (offset < total) {
			const writing = writeInParallel(sftp, localPath, remotePath, offset, total, options.mode ?? 0o644, (n) => {
				sent += n;
				options.onProgress?.({ bytes: sent, total });
			});
			await Promise.race([writing, lost]);
		}
		const [ours, theirs] = await Promise.all([expected, remoteSha256(conn, remotePath, options.checksumDeadlineMs)]);
		if (ours !== theirs) {
			if (offset > 0) {
				// What was there to resume from was not a prefix of this file: send it whole, once.
				sftp.end();
				return uploadFile(conn, localPath, remotePath, { ...options, resume: false });
			}
			throw new SshError('integrity', `${remotePath} on ${conn.name} has sha256 ${theirs}, expected ${ours}`);
		}
		return { bytes: total, resumedFrom: offset, sha256: ours };
	} finally {
		sftp.end();
	}
}

/** Reads a small file from a node (configs, certificates, markers); refuses anything over `maxBytes`. */
export async function downloadFile(conn: SshConnection, remotePath: string, maxBytes = 1 << 20): Promise<Buffer> {
	const sftp = await conn.sftp();
	const lost = whenClosed(sftp, conn.name);
	try {
		const size = await Promise.race([remoteSize(sftp, remotePath), lost]);
		if (size === null) throw new SshError('protocol', `${remotePath} does not exist on ${conn.name}`);
		if (size > maxBytes) {
			throw new SshError('protocol', `${remotePath} on ${conn.name} is ${size} bytes, over ${maxBytes}`);
		}
		const reading = new Promise<Buffer>((resolve, reject) =>
			sftp.readFile(remotePath, (err, data) => (err ? reject(new SshError('protocol', err.message)) : resolve(data)))
		);
		return await Promise.race([reading, lost]);
	} finally {
		sftp.end();
	}
}
