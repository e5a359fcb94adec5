import { eq, sql } from 'drizzle-orm';
import { recordAudit, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { notifySettings } from '$lib/server/db/schema';

const ROW = 1;

export interface NotifySettings {
	allowPrivateTargets: boolean;
}

export async function readNotifySettings(): Promise<NotifySettings> {
	const [row] = await db().select().from(notifySettings).where(eq(notifySettings.id, ROW));
	return { allowPrivateTargets: row?.allowPrivateTargets ?? false };
}

/** Allowing private targets lets channels reach the console's own network: an admin's explicit, audited choice. */
export async function updateNotifySettings(actor: Actor, s: NotifySettings): Promise<NotifySettings> {
	await db().transaction(async (tx) => {
		await tx
			.insert(notifySettings)
			.values({ id: ROW, allowPrivateTargets: s.allowPrivateTargets })
			.onConflictDoUpdate({ target: notifySettings.id, set: { allowPrivateTargets: s.allowPrivateTargets } });
		await recordAudit(
			actor,
			{ action: 'notify.settings', targetType: 'settings', details: { allow_private_targets: s.allowPrivateTargets } },
			tx
		);
	});
	return s;
}

/** The id of the last engine event turned into notifications (null: never read yet). */
export async function readEventCursor(): Promise<number | null> {
	const [row] = await db().select().from(notifySettings).where(eq(notifySettings.id, ROW));
	return row ? row.eventCursor : null;
}

/** Moves the cursor forward only: consoles reading the same events never move it back. */
export async function advanceEventCursor(id: number): Promise<void> {
	await db()
		.insert(notifySettings)
		.values({ id: ROW, eventCursor: id })
		.onConflictDoUpdate({
			target: notifySettings.id,
			set: { eventCursor: sql`greatest(${notifySettings.eventCursor}, ${id})` }
		});
}
