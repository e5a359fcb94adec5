let current: Buffer | undefined;

/** Set once at start-up (from FLOTILLA_SECRET_KEY or the key file), or by a test. */
export function useMasterKey(key: Buffer | undefined): void {
	current = key;
}

/** The key that seals secrets at rest. */
export function masterKey(): Buffer {
	if (!current) throw new Error('No master key loaded: the console has not started');
	return current;
}
