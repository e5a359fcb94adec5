import type { Role } from '$lib/server/db/schema';
import type { Level } from './levels';

/** Who is making a request, however they proved it. */
export interface Principal {
	via: 'session' | 'token';
	user: { id: string; username: string; role: Role };
	/** What this request may do: the user's role, or for a token its scope capped by that role. */
	level: Level;
	sessionId?: string;
	tokenId?: string;
}
