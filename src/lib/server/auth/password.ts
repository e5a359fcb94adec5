import { hash, verify } from '@node-rs/argon2';

// OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane): about 20 ms a hash on this class of machine.
const ARGON2_OPTIONS = { memoryCost: 19_456, timeCost: 2, outputLen: 32, parallelism: 1 } as const;

export function hashPassword(password: string): Promise<string> {
	return hash(password, ARGON2_OPTIONS);
}

export async function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
	try {
		return await verify(passwordHash, password);
	} catch {
		return false;
	}
}

let dummyHash: Promise<string> | undefined;

/**
 * Spends the same time as a real check when the username does not exist, so that response times
 * do not reveal which usernames are valid.
 */
export async function verifyAgainstDummy(password: string): Promise<false> {
	dummyHash ??= hashPassword('flotilla-timing-equaliser');
	await verifyPassword(await dummyHash, password);
	return false;
}
