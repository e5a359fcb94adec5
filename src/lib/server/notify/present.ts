import type { NotifyChannel, NotifyDelivery } from '$lib/server/db/schema';

/** A channel as the API and pages show it: never its URL's path (a Slack URL is a credential) or its secret. */
export function presentChannel(c: NotifyChannel) {
	return {
		id: c.id,
		name: c.name,
		kind: c.kind,
		url_origin: c.urlOrigin,
		events: c.events,
		security_days: c.thresholds.securityDays,
		reboot_days: c.thresholds.rebootDays,
		unreachable_minutes: c.thresholds.unreachableMinutes,
		enabled: c.enabled,
		created_at: c.createdAt.toISOString()
	};
}

export function presentDelivery(d: NotifyDelivery) {
	return {
		id: d.id,
		event: d.kind,
		key: d.eventKey,
		title: typeof d.payload.title === 'string' ? d.payload.title : null,
		state: d.state,
		attempts: d.attempts,
		last_status: d.lastStatus,
		last_response: d.lastResponse,
		last_attempt_at: d.lastAttemptAt?.toISOString() ?? null,
		delivered_at: d.deliveredAt?.toISOString() ?? null,
		created_at: d.createdAt.toISOString()
	};
}
