import { describe, expect, it } from 'vitest';
import { sh } from '$lib/server/ssh/shell';
import { cloneOrigin, newOrigin } from './git';
import { newHostModel, runCommandLine, type CommandIO } from './host';

/**
 * What the simulator refuses as a Debian host would, beside what conformance-provisioning.spec compares with a
 * testbed host: a provisioning bug shows on the demo as it would on a node, instead of passing by accident.
 */
const run = async (model: ReturnType<typeof newHostModel>, script: string) => {
	const out: string[] = [];
	const err: string[] = [];
	const io = {
		out: async (l: string) => void out.push(l),
		err: async (l: string) => void err.push(l)
	} as unknown as CommandIO;
	return { status: await runCommandLine(model, script, io), out, err };
};

describe('the simulator and what provisioning sends', () => {
	it('owners must exist; a directory is removed only with -r, and everything below it goes', async () => {
		const m = newHostModel('sim-1');
		expect(await run(m, sh`install -d -m 750 -o root -g ${'svc'} -- ${'/etc/svc'}`.script)).toMatchObject({
			status: 1,
			err: ["install: invalid group 'svc'"]
		});
		expect(
			(await run(m, sh`useradd --system --no-create-home --shell /usr/sbin/nologin -- ${'svc'}`.script)).status
		).toBe(0);
		expect((await run(m, sh`useradd --system -- ${'svc'}`.script)).err).toEqual(["useradd: user 'svc' already exists"]);
		expect((await run(m, sh`install -d -m 750 -o root -g ${'svc'} -- ${'/etc/svc/sub'}`.script)).status).toBe(0);
		expect((await run(m, sh`stat -c '%a %U %G' -- /etc/svc /etc/svc/sub`.script)).out).toEqual([
			'755 root root',
			'750 root svc'
		]);
		expect((await run(m, sh`printf x > /etc/svc/sub/f && chown -- nobody:svc /etc/svc/sub/f`.script)).status).toBe(0);
		expect((await run(m, sh`stat -c '%a %U %G' /etc/svc/sub/f`.script)).out).toEqual(['644 nobody svc']);
		expect((await run(m, sh`chown -- root:nosuch /etc/svc/sub/f`.script)).err).toEqual([
			"chown: invalid group: 'root:nosuch'"
		]);
		expect((await run(m, sh`rm -f -- /etc/svc`.script)).err).toEqual(["rm: cannot remove '/etc/svc': Is a directory"]);
		expect((await run(m, sh`rm -rf -- /etc/svc && test -e /etc/svc/sub/f`.script)).status).toBe(1);
		expect((await run(m, sh`test -d /etc/svc`.script)).status).toBe(1);
		expect((await run(m, sh`userdel -- svc; getent group svc`.script)).status).toBe(2);
	});

	it('git clones only into a new or empty directory, from a repository the node can reach', async () => {
		const m = newHostModel('sim-1');
		const origin = newOrigin('app', [{ sha: 'a'.repeat(40) }, { sha: 'b'.repeat(40) }]);
		m.remotes.set('https://git.example/app.git', origin);
		m.repos.set('/opt/old', cloneOrigin(origin, 1));
		expect((await run(m, sh`git clone --quiet -- https://git.example/app.git /opt/old`.script)).err).toEqual([
			"fatal: destination path '/opt/old' already exists and is not an empty directory."
		]);
		expect((await run(m, sh`git clone --quiet -- https://git.example/other.git /srv/x`.script)).status).toBe(128);
		const cloned = await run(
			m,
			sh`git clone --quiet -- https://git.example/app.git /srv/app/current && git -C /srv/app/current rev-parse HEAD`
				.script
		);
		expect(cloned).toMatchObject({ status: 0, out: ['b'.repeat(40)] });
		expect((await run(m, sh`test -d /srv/app/current/.git`.script)).status).toBe(0);
	});

	it('systemd enables only a unit that has a unit file; `x` and `x.service` are one unit', async () => {
		const m = newHostModel('sim-1');
		expect(await run(m, sh`systemctl enable -- x.service`.script)).toMatchObject({
			status: 1,
			err: ['Failed to enable unit: Unit file x.service does not exist.']
		});
		m.files.set('/etc/systemd/system/x.service', '[Service]\n');
		const up = await run(
			m,
			sh`systemctl enable -- x.service && systemctl start -- x && systemctl is-enabled x; systemctl is-active x.service`
				.script
		);
		expect(up).toMatchObject({ status: 0, out: ['enabled', 'active'] });
		expect((await run(m, sh`systemctl disable -- x; systemctl is-enabled -- x.service`.script)).out).toEqual([
			'disabled'
		]);
	});
});
