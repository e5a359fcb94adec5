import { SEMVER } from '$lib/schemas/releases';

/** Semantic Versioning 2.0.0 precedence (semver.org §11); build metadata is ignored. -1, 0 or 1. */
export function compareVersions(a: string, b: string): number {
	const pa = SEMVER.exec(a);
	const pb = SEMVER.exec(b);
	if (!pa || !pb) throw new Error(`not a semantic version: ${pa ? b : a}`);
	for (let i = 1; i <= 3; i++) {
		const d = Number(pa[i]) - Number(pb[i]);
		if (d) return Math.sign(d);
	}
	const preA = pa[4]?.split('.');
	const preB = pb[4]?.split('.');
	// A version without a pre-release ranks above the same version with one.
	if (!preA || !preB) return preA ? -1 : preB ? 1 : 0;
	for (let i = 0; i < Math.max(preA.length, preB.length); i++) {
		const x = preA[i];
		const y = preB[i];
		if (x === undefined) return -1;
		if (y === undefined) return 1;
		const nx = /^\d+$/.test(x);
		const ny = /^\d+$/.test(y);
		if (nx && ny) {
			const d = Number(x) - Number(y);
			if (d) return Math.sign(d);
		} else if (nx !== ny) return nx ? -1 : 1;
		else if (x !== y) return x < y ? -1 : 1;
	}
	return 0;
}
