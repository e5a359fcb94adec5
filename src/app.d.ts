import type { Principal } from '$lib/server/auth/principal';

declare global {
	namespace App {
		interface Locals {
			/** Who is asking: a signed-in user or an API token; null when anonymous. */
			principal: Principal | null;
		}
		interface Error {
			message: string;
			code?: string;
		}
	}
}

export {};
