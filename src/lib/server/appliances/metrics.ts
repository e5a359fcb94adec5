import { Histogram } from 'prom-client';
import { metricsRegistry } from '$lib/server/engine';

// Named without the flotilla_ prefix like the engine's update_* metrics, as appliance-update dashboards query
// them (docs/appliances.md, "Metrics"). update_apply_seconds, update_rollback_count and update_success_rate are
// the engine's: an appliance update is a task of a flow that changes nodes.
const downloadSeconds = new Histogram({
	name: 'update_download_seconds',
	help: 'Time to send an appliance image to the standby slot (SFTP upload, resumed uploads included)',
	buckets: [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
	registers: [metricsRegistry]
});
const rebootSeconds = new Histogram({
	name: 'update_reboot_seconds',
	help: 'Time from an appliance reboot into the new slot to its health gate passing and the slot committed',
	buckets: [1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
	registers: [metricsRegistry]
});

export const observeDownload = (seconds: number) => downloadSeconds.observe(seconds);
export const observeReboot = (seconds: number) => rebootSeconds.observe(seconds);
