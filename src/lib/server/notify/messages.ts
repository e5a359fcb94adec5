import type { NotifyEventKind } from '$lib/schemas/notify';

/** One thing that happened, as every channel is told of it. */
export interface Notification {
	/** `test`: what the Settings page's "Send test" sends. */
	kind: NotifyEventKind | 'test';
	/** Unique per occurrence (an engine event's id, a condition and when it began): a channel gets each once. */
	key: string;
	at: string;
	title: string;
	text: string;
	/** A path in the console (`/runs/<id>`), made absolute with the console's address when sent. */
	path?: string;
	data: Record<string, unknown>;
}

/** The generic webhook body (docs/integrations.md). */
export function webhookBody(n: Notification, deliveryId: string, consoleUrl: string): string {
	return JSON.stringify({
		delivery_id: deliveryId,
		event: n.kind,
		key: n.key,
		at: n.at,
		title: n.title,
		text: n.text,
		link: n.path ? linkTo(consoleUrl, n.path) : null,
		data: n.data
	});
}

/** A Slack incoming-webhook message: one readable line, the details, and a link to the console's page. */
export function slackBody(n: Notification, consoleUrl: string): string {
	const link = n.path ? linkTo(consoleUrl, n.path) : null;
	const lines = [`*${escapeSlack(n.title)}*`, escapeSlack(n.text)];
	if (link) lines.push(`<${link}|Open in Flotilla>`);
	return JSON.stringify({ text: lines.join('\n') });
}

function linkTo(consoleUrl: string, path: string): string {
	return consoleUrl ? new URL(path, consoleUrl).toString() : path;
}

/** Slack reads `<`, `>` and `&` as markup: names typed by people must not become links. */
function escapeSlack(s: string): string {
	return s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}
