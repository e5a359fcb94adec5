import { StringDecoder } from 'node:string_decoder';

/**
 * Turns a byte stream into lines as they complete, without splitting a UTF-8 character across chunks.
 * A line longer than `maxLine` is cut there, so one endless line cannot grow without bound.
 */
export class LineSplitter {
	private readonly decoder = new StringDecoder('utf8');
	private pending = '';

	constructor(
		private readonly emit: (line: string) => void,
		private readonly maxLine = 16_384
	) {}

	push(chunk: Buffer): void {
		this.pending += this.decoder.write(chunk);
		let newline: number;
		while ((newline = this.pending.indexOf('\n')) >= 0) {
			this.emit(this.pending.slice(0, newline).replace(/\r$/, ''));
			this.pending = this.pending.slice(newline + 1);
		}
		while (this.pending.length > this.maxLine) {
			this.emit(this.pending.slice(0, this.maxLine));
			this.pending = this.pending.slice(this.maxLine);
		}
	}

	end(): void {
		this.pending += this.decoder.end();
		if (this.pending) this.emit(this.pending.replace(/\r$/, ''));
		this.pending = '';
	}
}

/** Keeps the last `limit` characters of a stream's output: enough to show why a step failed. */
export class TailBuffer {
	private text = '';
	truncated = false;

	constructor(private readonly limit = 1 << 20) {}

	append(line: string): void {
		this.text += line + '\n';
		if (this.text.length > this.limit) {
			this.text = this.text.slice(this.text.length - this.limit);
			this.truncated = true;
		}
	}

	toString(): string {
		return this.text;
	}
}
