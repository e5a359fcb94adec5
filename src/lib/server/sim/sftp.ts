import ssh2, { type SFTPWrapper } from 'ssh2';
import { createdFile, isDirectory } from './files';
import { bytesOf, storeBytes, type HostModel } from './host';

/**
 * The SFTP subsystem of a simulated host, enough for what the console does over SFTP: upload a file (open
 * for writing or for resuming with `r+`, parallel writes at offsets, close), stat it, and read a small file.
 * Bytes land in the model's files, so `sha256sum` and the slot helper see exactly what arrived; what arrived
 * before a dropped connection stays, as on a real disk. A link rate (HostModel.linkBytesPerSecond) makes
 * uploads take time the way a slow link does, so progress can be watched.
 */

const { OPEN_MODE, STATUS_CODE } = ssh2.utils.sftp;

interface Open {
	path: string;
	writable: boolean;
	/** The file's bytes while it is open for writing; `length` is the file's size. */
	buffer: Buffer;
	length: number;
}

const parentOf = (path: string) => path.slice(0, path.lastIndexOf('/')) || '/';

const attrsOf = (size: number) => ({ mode: 0o100644, uid: 0, gid: 0, size, atime: 0, mtime: 0 });

export function serveSftp(sftp: SFTPWrapper, model: HostModel): void {
	const handles = new Map<number, Open>();
	let nextHandle = 1;
	/** When the simulated link is free again (ms, performance clock): writes queue behind each other. */
	let linkFreeAt = 0;

	const handleOf = (buf: Buffer) => handles.get(buf.readUInt32BE(0));
	const flush = (open: Open) => {
		if (open.writable) storeBytes(model, open.path, open.buffer.subarray(0, open.length));
	};
	const waitForLink = async (bytes: number) => {
		const rate = model.linkBytesPerSecond;
		if (!rate) return;
		const start = Math.max(performance.now(), linkFreeAt);
		linkFreeAt = start + (bytes / rate) * 1000;
		await new Promise((r) => setTimeout(r, linkFreeAt - performance.now()));
	};

	sftp.on('OPEN', (reqId, filename, flags, attrs) => {
		const exists = model.files.has(filename);
		const writable = (flags & OPEN_MODE.WRITE) !== 0;
		if (!exists && !((flags & OPEN_MODE.CREAT) !== 0 && isDirectory(model, parentOf(filename)))) {
			return sftp.status(reqId, STATUS_CODE.NO_SUCH_FILE, 'No such file');
		}
		// A new file takes the mode the client asks for (sftp-server's umask 022 leaves the console's modes as they are).
		if (!exists && writable) createdFile(model, filename, (attrs.mode ?? 0o644) & ~0o022);
		const current = exists && !(flags & OPEN_MODE.TRUNC) ? bytesOf(model, filename) : Buffer.alloc(0);
		const buffer = Buffer.alloc(Math.max(current.length, 1 << 16));
		current.copy(buffer);
		const id = nextHandle++;
		const open: Open = { path: filename, writable, buffer, length: current.length };
		handles.set(id, open);
		if (writable) flush(open);
		const handle = Buffer.alloc(4);
		handle.writeUInt32BE(id);
		sftp.handle(reqId, handle);
	});

	sftp.on('WRITE', (reqId, handle, offset, data: Buffer) => {
		const open = handleOf(handle);
		if (!open?.writable) return sftp.status(reqId, STATUS_CODE.FAILURE, 'Bad handle');
		const end = offset + data.length;
		if (end > open.buffer.length) {
			const grown = Buffer.alloc(Math.max(end, open.buffer.length * 2));
			open.buffer.copy(grown, 0, 0, open.length);
			open.buffer = grown;
		}
		// A write past the end leaves zeros in between, as a sparse file reads.
		if (offset > open.length) open.buffer.fill(0, open.length, offset);
		data.copy(open.buffer, offset);
		open.length = Math.max(open.length, end);
		void waitForLink(data.length).then(() => {
			flush(open);
			sftp.status(reqId, STATUS_CODE.OK);
		});
	});

	sftp.on('READ', (reqId, handle, offset, length) => {
		const open = handleOf(handle);
		if (!open) return sftp.status(reqId, STATUS_CODE.FAILURE, 'Bad handle');
		const bytes = open.writable ? open.buffer.subarray(0, open.length) : bytesOf(model, open.path);
		if (offset >= bytes.length) return sftp.status(reqId, STATUS_CODE.EOF);
		sftp.data(reqId, bytes.subarray(offset, Math.min(bytes.length, offset + length)));
	});

	sftp.on('FSTAT', (reqId, handle) => {
		const open = handleOf(handle);
		if (!open) return sftp.status(reqId, STATUS_CODE.FAILURE, 'Bad handle');
		sftp.attrs(reqId, attrsOf(open.writable ? open.length : bytesOf(model, open.path).length));
	});

	const stat = (reqId: number, path: string) => {
		if (!model.files.has(path)) return sftp.status(reqId, STATUS_CODE.NO_SUCH_FILE, 'No such file');
		sftp.attrs(reqId, attrsOf(bytesOf(model, path).length));
	};
	sftp.on('STAT', stat);
	sftp.on('LSTAT', stat);

	sftp.on('CLOSE', (reqId, handle) => {
		const open = handleOf(handle);
		if (!open) return sftp.status(reqId, STATUS_CODE.FAILURE, 'Bad handle');
		flush(open);
		handles.delete(handle.readUInt32BE(0));
		sftp.status(reqId, STATUS_CODE.OK);
	});

	// Anything else fails loudly, so that a console change the model does not follow fails a test.
	const unsupported = ['OPENDIR', 'READDIR', 'REMOVE', 'RMDIR', 'REALPATH', 'READLINK', 'SETSTAT', 'FSETSTAT'];
	for (const op of [...unsupported, 'MKDIR', 'RENAME', 'SYMLINK', 'EXTENDED']) {
		sftp.on(op, (reqId: number) => sftp.status(reqId, STATUS_CODE.OP_UNSUPPORTED, `the simulator does not ${op}`));
	}
}
