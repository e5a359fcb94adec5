import { readFileSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { config } from '$lib/server/config';
import { keyIdOf, parsePublicKeys, type ReleaseKeys } from './signing';

let override: ReleaseKeys | undefined;
let loaded: ReleaseKeys | undefined;

/** The keys releases are verified with: the configuration's, read once (a bad key fails loudly at start-up). */
export function releaseKeys(): ReleaseKeys {
	if (override) return override;
	if (loaded) return loaded;
	const cfg = config();
	const text = [
		cfg.releasePublicKeys ?? '',
		cfg.releasePublicKeysFile ? readFileSync(cfg.releasePublicKeysFile, 'utf8') : ''
	]
		.join('\n')
		// An environment variable cannot always hold newlines: `\n` written out counts as one.
		.replace(/\\n/g, '\n');
	loaded = {
		ed25519: parsePublicKeys(text).map((key) => ({ id: keyIdOf(key), key })),
		hmacSecret: cfg.releaseSigningSecret
	};
	return loaded;
}

/**
 * Adds an Ed25519 public key to those releases are verified with, for this process only: the quick start's demo
 * fleet signs its own demo release with a key of its own (docs/releases.md, "The demo").
 */
export function trustReleaseKey(key: KeyObject): string {
	const keys = releaseKeys();
	const id = keyIdOf(key);
	if (!keys.ed25519.some((k) => k.id === id)) keys.ed25519.push({ id, key });
	return id;
}

/** For tests: verify with these keys instead of the configuration's (undefined: back to the configuration). */
export function useReleaseKeys(keys: ReleaseKeys | undefined): void {
	override = keys;
}

let minVersionOverride: string | null | undefined;

/** Rollback protection's floor (docs/releases.md): null when none is configured. */
export function minimumVersion(): string | null {
	return minVersionOverride !== undefined ? minVersionOverride : (config().releaseMinVersion ?? null);
}

/** For tests: the floor to use (undefined: back to the configuration). */
export function useMinimumVersion(version: string | null | undefined): void {
	minVersionOverride = version;
}
