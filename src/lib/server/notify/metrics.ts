import { and, count, eq, gt, isNotNull, lte, sql } from 'drizzle-orm';
import { Gauge } from 'prom-client';
import { db } from '$lib/server/db';
import { certificates, nodes, notifyDeliveries } from '$lib/server/db/schema';
import { metricsRegistry } from '$lib/server/engine';
import { alertsFor } from '$lib/server/fleet/status';

const DAY = sql`interval '1 day'`;
let registered = false;

/**
 * What needs someone, as gauges on /metrics, for the alerting rules in docs/prometheus/: the same conditions the
 * notifications watch, counted when Prometheus scrapes.
 */
export function registerNotifyMetrics(): void {
	if (registered) return;
	registered = true;
	new Gauge({
		name: 'flotilla_certificates_expiring',
		help: 'Certificates not yet expired whose validity ends within `days` days',
		labelNames: ['days'],
		registers: [metricsRegistry],
		async collect() {
			for (const days of [7, 30]) {
				const [row] = await db()
					.select({ n: count() })
					.from(certificates)
					.where(
						and(
							isNotNull(certificates.notAfter),
							gt(certificates.notAfter, sql`now()`),
							lte(certificates.notAfter, sql`now() + ${days} * ${DAY}`)
						)
					);
				this.set({ days: String(days) }, Number(row?.n ?? 0));
			}
		}
	});
	new Gauge({
		name: 'flotilla_certificates_expired',
		help: 'Certificates whose validity has ended',
		registers: [metricsRegistry],
		async collect() {
			const [row] = await db()
				.select({ n: count() })
				.from(certificates)
				.where(and(isNotNull(certificates.notAfter), lte(certificates.notAfter, sql`now()`)));
			this.set(Number(row?.n ?? 0));
		}
	});
	new Gauge({
		name: 'flotilla_nodes_unreachable',
		help: 'Nodes whose last contact failed',
		registers: [metricsRegistry],
		async collect() {
			const [row] = await db().select({ n: count() }).from(nodes).where(eq(nodes.reachable, false));
			this.set(Number(row?.n ?? 0));
		}
	});
	new Gauge({
		name: 'flotilla_nodes_alerted',
		help: 'Nodes with an alert raised (security_updates: security updates pending; reboot_required)',
		labelNames: ['alert'],
		registers: [metricsRegistry],
		async collect() {
			const ids = (await db().select({ id: nodes.id }).from(nodes)).map((n) => n.id);
			const counts = new Map<string, number>([
				['security_updates', 0],
				['reboot_required', 0]
			]);
			for (const raised of (await alertsFor(ids)).values()) {
				for (const a of raised) counts.set(a, (counts.get(a) ?? 0) + 1);
			}
			for (const [alert, n] of counts) this.set({ alert }, n);
		}
	});
	new Gauge({
		name: 'flotilla_notify_deliveries',
		help: 'Notification deliveries by state (queued: being tried; failed: retries spent)',
		labelNames: ['state'],
		registers: [metricsRegistry],
		async collect() {
			const rows = await db()
				.select({ state: notifyDeliveries.state, n: count() })
				.from(notifyDeliveries)
				.where(sql`${notifyDeliveries.state} in ('queued', 'failed')`)
				.groupBy(notifyDeliveries.state);
			for (const state of ['queued', 'failed']) {
				this.set({ state }, Number(rows.find((r) => r.state === state)?.n ?? 0));
			}
		}
	});
}
