import type { CommandIO, HostModel } from './host';
import { pathExists } from './files';

/**
 * `systemctl` on a simulated node, as the testbed's stand-in answers it (tests/testbed/host/bin/systemctl): a
 * unit is running or not (HostModel.units) and enabled or not (HostModel.enabled); `api` and `api.service` name
 * the same unit, as in systemd. What the model adds over the stand-in is systemd's own refusal to enable a unit
 * that has no unit file, so provisioning that forgot to install one fails here as it would on a node.
 */
const UNIT_DIR = '/etc/systemd/system';

/** The key the model keeps a unit under: the name it was first known by, with or without `.service`. */
function keyOf(names: Iterable<string>, unit: string): string {
	const other = unit.endsWith('.service') ? unit.slice(0, -'.service'.length) : `${unit}.service`;
	for (const n of names) if (n === unit || n === other) return n;
	return unit;
}

const fileOf = (unit: string) => `${UNIT_DIR}/${unit.includes('.') ? unit : `${unit}.service`}`;

export async function systemctl(
	args: string[],
	io: CommandIO,
	m: HostModel,
	reboot: () => Promise<number>
): Promise<number> {
	const quiet = args.includes('--quiet') || args.includes('-q');
	const [verb, ...units] = args.filter((a) => !a.startsWith('-'));
	for (const unit of units) {
		if (unit.includes('/')) {
			await io.err(`systemctl: invalid unit name ${unit}`);
			return 1;
		}
	}
	const stateOf = (unit: string) =>
		m.faults.failHealth ? 'failed' : (m.units.get(keyOf(m.units.keys(), unit)) ?? 'inactive');
	switch (verb) {
		case 'restart':
		case 'start':
		case 'reload':
		case 'try-restart':
			for (const unit of units) {
				const key = keyOf(m.units.keys(), unit);
				m.units.set(key, 'active');
				m.onReload?.get(key)?.();
			}
			return 0;
		case 'reboot':
			return reboot();
		case 'stop':
			for (const unit of units) m.units.set(keyOf(m.units.keys(), unit), 'inactive');
			return 0;
		case 'daemon-reload':
			return 0;
		case 'enable':
			for (const unit of units) {
				if (!m.units.has(keyOf(m.units.keys(), unit)) && !pathExists(m, fileOf(unit))) {
					await io.err(`Failed to enable unit: Unit file ${fileOf(unit).slice(UNIT_DIR.length + 1)} does not exist.`);
					return 1;
				}
				m.enabled.add(keyOf(m.enabled, unit));
			}
			return 0;
		case 'disable':
			for (const unit of units) m.enabled.delete(keyOf(m.enabled, unit));
			return 0;
		case 'is-enabled': {
			let code = 0;
			for (const unit of units) {
				const enabled = m.enabled.has(keyOf(m.enabled, unit));
				if (!enabled) code = 1;
				if (!quiet) await io.out(enabled ? 'enabled' : 'disabled');
			}
			return code;
		}
		case 'is-active': {
			let code = 0;
			for (const unit of units) {
				const state = stateOf(unit);
				if (state !== 'active') code = 3;
				if (!quiet) await io.out(state);
			}
			return code;
		}
		case 'status': {
			let code = 0;
			for (const unit of units) {
				const state = stateOf(unit);
				if (state !== 'active') code = 3;
				await io.out(`● ${unit} - simulated`);
				await io.out(`     Active: ${state}`);
			}
			return code;
		}
		default:
			await io.err(`systemctl: unknown command ${verb}`);
			return 1;
	}
}
