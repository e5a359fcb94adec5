/**
 * The bytes a release signature covers (docs/releases.md, "Canonical form"): the manifest without its
 * `signature` field, as JSON with object keys sorted by their UTF-16 code units (JavaScript's default sort),
 * no whitespace, strings and numbers written as JSON.stringify writes them, UTF-8 encoded.
 */
export function canonicalManifest(manifest: Record<string, unknown>): string {
	const { signature: _ignored, ...rest } = manifest;
	return canonicalJson(rest);
}

export function canonicalJson(value: unknown): string {
	if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
	if (value && typeof value === 'object') {
		const entries = Object.entries(value as Record<string, unknown>)
			.filter(([, v]) => v !== undefined)
			.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
		return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
	}
	return JSON.stringify(value);
}
