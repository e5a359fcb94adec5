/**
 * The few DER structures the internal CA reads and writes (RFC 5280, RFC 2986): node:crypto verifies and signs
 * but neither parses a CSR nor issues a certificate, and these few hundred lines spare a dependency that would
 * see the CA's key (docs/certificates.md, "Internal CA"). Certificates and CRLs made here are checked against
 * the real openssl in ./issue.spec.ts.
 */

export interface Der {
	tag: number;
	/** The whole element, header included: what a signature covers. */
	raw: Buffer;
	/** The content only. */
	value: Buffer;
}

/** Reads one element at `offset`; throws on anything truncated or malformed. */
export function readDer(buf: Buffer, offset = 0): Der & { end: number } {
	if (offset + 2 > buf.length) throw new Error('DER: truncated');
	const tag = buf[offset]!;
	let len = buf[offset + 1]!;
	let at = offset + 2;
	if (len & 0x80) {
		const n = len & 0x7f;
		if (n === 0 || n > 4 || at + n > buf.length) throw new Error('DER: bad length');
		len = 0;
		for (let i = 0; i < n; i++) len = len * 256 + buf[at + i]!;
		at += n;
	}
	if (at + len > buf.length) throw new Error('DER: truncated');
	return { tag, raw: buf.subarray(offset, at + len), value: buf.subarray(at, at + len), end: at + len };
}

/** The elements inside a constructed one (a SEQUENCE, a SET, a context tag). */
export function children(el: Der): Der[] {
	const out: Der[] = [];
	for (let at = 0; at < el.value.length;) {
		const c = readDer(el.value, at);
		out.push(c);
		at = c.end;
	}
	return out;
}

function length(n: number): Buffer {
	if (n < 0x80) return Buffer.from([n]);
	const bytes: number[] = [];
	for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
	return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function tlv(tag: number, ...content: Buffer[]): Buffer {
	const body = Buffer.concat(content);
	return Buffer.concat([Buffer.from([tag]), length(body.length), body]);
}

export const sequence = (...parts: Buffer[]) => tlv(0x30, ...parts);
export const set = (...parts: Buffer[]) => tlv(0x31, ...parts);
export const octetString = (b: Buffer) => tlv(0x04, b);
export const bitString = (b: Buffer) => tlv(0x03, Buffer.from([0]), b);
export const boolTrue = () => tlv(0x01, Buffer.from([0xff]));
export const utf8 = (s: string) => tlv(0x0c, Buffer.from(s, 'utf8'));

/** A positive INTEGER from big-endian bytes, minimal as DER requires (OpenSSL 3 refuses padding). */
export function integer(bytes: Buffer): Buffer {
	let start = 0;
	while (start < bytes.length - 1 && bytes[start] === 0 && !(bytes[start + 1]! & 0x80)) start++;
	const minimal = bytes.subarray(start);
	return tlv(0x02, minimal[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), minimal]) : minimal);
}

export function oid(dotted: string): Buffer {
	const [first, second, ...rest] = dotted.split('.').map(Number);
	const bytes = [first! * 40 + second!];
	for (const arc of rest) {
		const groups: number[] = [arc & 0x7f];
		for (let v = arc >> 7; v > 0; v >>= 7) groups.unshift((v & 0x7f) | 0x80);
		bytes.push(...groups);
	}
	return tlv(0x06, Buffer.from(bytes));
}

export function readOid(el: Der): string {
	if (el.tag !== 0x06) throw new Error('DER: not an OID');
	const b = el.value;
	const arcs = [Math.floor(b[0]! / 40), b[0]! % 40];
	let v = 0;
	for (let i = 1; i < b.length; i++) {
		v = v * 128 + (b[i]! & 0x7f);
		if (!(b[i]! & 0x80)) {
			arcs.push(v);
			v = 0;
		}
	}
	return arcs.join('.');
}

/** UTCTime until 2049, GeneralizedTime after, as RFC 5280 requires; whole seconds. */
export function time(date: Date): Buffer {
	const iso = date.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
	return date.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(iso.slice(2))) : tlv(0x18, Buffer.from(iso));
}

export function pem(label: string, der: Buffer): string {
	const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
	return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** The DER inside the first PEM block labelled `label`; null when there is none. */
export function fromPem(text: string, label: string): Buffer | null {
	const m = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`).exec(text);
	return m ? Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64') : null;
}
