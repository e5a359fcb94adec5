import { describe, expect, it } from 'vitest';
import { detectFormat } from './import';
import { parseIniInventory, shellWords } from './ini';
import { parseLiteral } from './literal';
import { expandHostPattern, MAX_INVENTORY_HOSTS, type ParsedInventory } from './model';
import { planInventory, type RoleGroups } from './plan';
import { parseYamlInventory } from './yaml';

const credentialId = '6f1c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f';
const plan = (parsed: ParsedInventory, roleGroups: RoleGroups = 'all') =>
	planInventory(parsed, { credentialId, roleGroups });
const byName = (p: ReturnType<typeof plan>) => Object.fromEntries(p.nodes.map((n) => [n.input.name, n.input]));

/** The same fleet in both formats: every test of the mapping runs on each. */
const ini = `# production
mail.example.com

[webservers]
web[01:03].example.com ansible_user=deploy
web-ssh.example.com:2222 flotilla_labels="tier=edge"

[dbservers]
db1 ansible_host=10.0.0.5 ansible_port=5522 flotilla_control_plane=yes
db2 ansible_host=10.0.0.6

[backend:children]
webservers
dbservers

[backend:vars]
flotilla_labels=env=prod,dc=ams
flotilla_policy=full

[all:vars]
ansible_user=root
`;

const yaml = `# production
all:
  hosts:
    mail.example.com:
  vars:
    ansible_user: root
  children:
    backend:
      vars:
        flotilla_labels: {env: prod, dc: ams}
        flotilla_policy: full
      children:
        webservers:
          hosts:
            web[01:03].example.com:
              ansible_user: deploy
            web-ssh.example.com:
              ansible_port: 2222
              flotilla_labels: {tier: edge}
        dbservers:
          hosts:
            db1:
              ansible_host: 10.0.0.5
              ansible_port: 5522
              flotilla_control_plane: yes
            db2: {ansible_host: 10.0.0.6}
`;

describe.each([
	['INI', () => parseIniInventory(ini), { 'mail.example.com': 2, 'web01.example.com': 5, db1: 9 }],
	['YAML', () => parseYamlInventory(yaml), { 'mail.example.com': 4, 'web01.example.com': 15, db1: 22 }]
] as const)('a good %s inventory', (_, parse, lines) => {
	it('reads hosts, ranges, ports and users, and groups become roles with their parents', () => {
		const parsed = parse();
		expect(parsed.errors).toEqual([]);
		const p = plan(parsed);
		expect(p.errors).toEqual([]);
		const nodes = byName(p);
		expect(Object.keys(nodes).sort()).toEqual([
			'db1',
			'db2',
			'mail.example.com',
			'web-ssh.example.com',
			'web01.example.com',
			'web02.example.com',
			'web03.example.com'
		]);
		expect(nodes['web02.example.com']).toMatchObject({
			host: 'web02.example.com',
			port: 22,
			// The host's own variable beats [all:vars].
			user: 'deploy',
			roles: ['backend', 'webservers'],
			labels: { env: 'prod', dc: 'ams' },
			policy: 'full',
			credential_id: credentialId,
			control_plane: false
		});
		expect(nodes['db1']).toMatchObject({
			host: '10.0.0.5',
			port: 5522,
			user: 'root',
			roles: ['backend', 'dbservers'],
			control_plane: true
		});
		// Labels merge key by key: the group's, then the host's.
		expect(nodes['web-ssh.example.com']).toMatchObject({
			port: 2222,
			labels: { env: 'prod', dc: 'ams', tier: 'edge' }
		});
		expect(nodes['mail.example.com']).toMatchObject({ roles: [], labels: {}, policy: null, user: 'root' });
		expect(nodes['db1']!.host_key_fingerprint).toBeUndefined();
	});

	it('lets the operator choose which groups are roles', () => {
		expect(byName(plan(parse(), 'none'))['db1']!.roles).toEqual([]);
		expect(byName(plan(parse(), ['dbservers']))['db1']!.roles).toEqual(['dbservers']);
		expect(byName(plan(parse(), ['dbservers']))['web01.example.com']!.roles).toEqual([]);
	});

	it('records the line each host first appears on', () => {
		expect(Object.fromEntries(plan(parse()).nodes.map((n) => [n.input.name, n.line]))).toMatchObject(lines);
	});
});

describe('the INI format', () => {
	it('reads the inventory `npm run testbed` writes, quoted values and all', () => {
		const text = [
			'host01 ansible_host=127.0.1.240 ansible_port=22 ansible_user=root ansible_ssh_private_key_file=/tmp/tb/client_key',
			'host02 ansible_host=127.0.1.241 ansible_port=22 ansible_user=root ansible_ssh_private_key_file=/tmp/tb/client_key',
			'',
			'[all:vars]',
			"ansible_ssh_common_args='-o UserKnownHostsFile=/tmp/tb/known_hosts -o StrictHostKeyChecking=yes'",
			''
		].join('\n');
		const parsed = parseIniInventory(text);
		expect(parsed.errors).toEqual([]);
		expect(parsed.inventory.groups.get('all')!.vars.get('ansible_ssh_common_args')).toEqual({
			value: '-o UserKnownHostsFile=/tmp/tb/known_hosts -o StrictHostKeyChecking=yes',
			line: 5
		});
		const p = plan(parsed);
		expect(p.errors).toEqual([]);
		expect(p.nodes.map((n) => [n.input.name, n.input.host, n.input.port, n.input.user, n.input.roles])).toEqual([
			['host01', '127.0.1.240', 22, 'root', []],
			['host02', '127.0.1.241', 22, 'root', []]
		]);
		// What the console cannot honour is said, once per line that sets it.
		expect(p.warnings.map((w) => [w.line, w.message.split(':')[0]])).toEqual([
			[1, 'ansible_ssh_private_key_file is ignored'],
			[2, 'ansible_ssh_private_key_file is ignored'],
			[5, 'ansible_ssh_common_args is ignored']
		]);
	});

	it('reports every bad line by number and carries on reading', () => {
		const parsed = parseIniInventory(
			[
				'[web]', // 1
				'web1 ansible_port', // 2: no =
				"web2 ansible_user='deploy", // 3: open quote
				'[web:hosts', // 4: not a header
				'[db:settings]', // 5: unknown kind
				'db1', // 6: under the unknown section, not read
				'[db:vars]', // 7
				'just words', // 8: no =
				'[db:children]', // 9
				'a b', // 10: not a group name
				'db', // 11: itself
				'[web]', // 12
				'web[3:1]', // 13: backwards
				'web[a:5]', // 14: mixed
				'good ansible_host=10.0.0.1 # trailing comment' // 15
			].join('\n')
		);
		expect(parsed.errors.map((e) => e.line)).toEqual([2, 3, 4, 5, 8, 10, 11, 13, 14]);
		expect(parsed.errors[0]!.message).toMatch(/Expected key=value/);
		expect(parsed.errors[1]!.message).toMatch(/No closing quotation/);
		expect(parsed.errors[3]!.message).toMatch(/\[db:settings\]/);
		expect([...parsed.inventory.hosts.keys()]).toEqual(['good']);
		expect(parsed.inventory.hosts.get('good')!.vars.get('ansible_host')!.value).toBe('10.0.0.1');
	});

	it('ties a refused value to the line that set it, naming the variable', () => {
		const p = plan(
			parseIniInventory(
				[
					'[web]',
					'web1 ansible_port=70000',
					'web2 ansible_host="-oProxyCommand=touch /tmp/x"',
					'web3',
					'bad_name!',
					'web_4',
					'',
					'[web:vars]',
					'ansible_user="root; rm -rf /"',
					'flotilla_policy=yolo'
				].join('\n')
			)
		);
		const messages = p.errors.map((e) => `${e.line} ${e.host}: ${e.message}`);
		expect(messages).toEqual(
			expect.arrayContaining([
				'2 web1: ansible_port: must be 1 to 65535',
				'3 web2: ansible_host: must be a host name or an IP address',
				'9 web3: ansible_user: must be a Unix user name: lower-case letters, digits, _ -, at most 32',
				'10 web3: flotilla_policy: must be full, security or manual',
				'5 bad_name!: the host name: must be 1–63 letters, digits, dots, dashes or underscores',
				'6 web_4: ansible_host is not set, and the host name: must be a host name or an IP address'
			])
		);
		expect(p.nodes).toEqual([]);
	});

	it('refuses groups that cannot be roles once, at their line, unless they are left out', () => {
		const text = '[Web_Servers]\nweb1\nweb2\n\n[db]\ndb1\n';
		const p = plan(parseIniInventory(text));
		expect(p.errors).toHaveLength(1);
		expect(p.errors[0]).toMatchObject({
			line: 1,
			message: expect.stringMatching(/^Group Web_Servers cannot be a role/)
		});
		expect(plan(parseIniInventory(text), ['db']).errors).toEqual([]);
	});

	it('finds groups that contain each other', () => {
		const p = plan(parseIniInventory('[a:children]\nb\n[b:children]\nc\n[c:children]\na\n[c]\nh1\n'));
		expect(p.errors).toEqual([expect.objectContaining({ message: expect.stringMatching(/contain each other/) })]);
	});

	it('stops at the host limit', () => {
		const p = parseIniInventory(`[many]\nn[1:${MAX_INVENTORY_HOSTS}]\nextra1\nextra2\n`);
		expect(p.inventory.hosts.size).toBe(MAX_INVENTORY_HOSTS);
		expect(p.errors).toEqual([{ line: 3, message: expect.stringMatching(/More than 2000 hosts/) }]);
		expect(parseIniInventory('huge[1:99999]').errors[0]!.message).toMatch(/more than 2000 hosts in one range/);
	});

	it('takes roles, kind and a fingerprint from flotilla_ variables', () => {
		const fp = 'SHA256:' + 'A'.repeat(43);
		const p = plan(
			parseIniInventory(
				`[edge]\nbox1 flotilla_roles="['gateway', 'vpn']" flotilla_kind=appliance flotilla_host_key_fingerprint=${fp}\nbox2 flotilla_roles=gateway,dns flotilla_rols=x\n`
			)
		);
		expect(p.errors).toEqual([]);
		expect(byName(p)['box1']).toMatchObject({
			roles: ['edge', 'gateway', 'vpn'],
			kind: 'appliance',
			host_key_fingerprint: fp
		});
		expect(byName(p)['box2']!.roles).toEqual(['edge', 'gateway', 'dns']);
		expect(p.warnings).toEqual([{ line: 3, message: expect.stringMatching(/^flotilla_rols is not a variable/) }]);
	});
});

describe('the YAML format', () => {
	it('reports syntax errors at the line the YAML library points to', () => {
		const parsed = parseYamlInventory('all:\n  hosts:\n    a:\n    a:\n  children:\n    bad: [\n');
		expect(parsed.errors.length).toBeGreaterThan(0);
		expect(parsed.errors[0]).toMatchObject({ line: 4, message: expect.stringMatching(/unique/) });
		expect(parseYamlInventory('all:\n  hosts:\n    web1:\n\tweb2:\n').errors[0]!.line).toBe(4);
		expect(parseYamlInventory('all:\n  vars: {a: 1\n  hosts:\n').errors[0]!.line).toBeGreaterThanOrEqual(2);
	});

	it('reports a structure Ansible would not read, by line', () => {
		const parsed = parseYamlInventory(
			[
				'all:', // 1
				'  hosts:', // 2
				'    - web1', // 3: a list, not a mapping
				'  children:', // 4
				'    db:', // 5
				'      hosts:', // 6
				'        db1: just-a-string', // 7
				'      vars: [1, 2]', // 8
				'      colour: blue' // 9: ignored, as Ansible does
			].join('\n')
		);
		expect(parsed.errors.map((e) => [e.line, e.message.split(':')[0]])).toEqual([
			[3, 'Group all'],
			[7, 'Host db1'],
			[8, 'Group db']
		]);
		expect(parsed.warnings).toEqual([{ line: 9, message: expect.stringMatching(/ignored the key colour/) }]);
	});

	it('ties a refused value to the line of its key', () => {
		const p = plan(parseYamlInventory('all:\n  hosts:\n    web1:\n      ansible_port: 0\n      ansible_user: Admin\n'));
		expect(p.errors.map((e) => [e.line, e.message])).toEqual([
			[4, 'ansible_port: must be 1 to 65535'],
			[5, 'ansible_user: must be a Unix user name: lower-case letters, digits, _ -, at most 32']
		]);
	});

	it('refuses an empty document and one that is not a mapping', () => {
		expect(parseYamlInventory('---\n').errors[0]!.message).toMatch(/empty/);
		expect(parseYamlInventory('- a\n- b\n').errors[0]).toMatchObject({
			line: 1,
			message: expect.stringMatching(/mapping of groups/)
		});
	});
});

describe('helpers', () => {
	it('expands host ranges as Ansible does', () => {
		expect(expandHostPattern('web[01:03]')).toEqual(['web01', 'web02', 'web03']);
		expect(expandHostPattern('db-[a:c].x')).toEqual(['db-a.x', 'db-b.x', 'db-c.x']);
		expect(expandHostPattern('n[1:7:3]')).toEqual(['n1', 'n4', 'n7']);
		expect(expandHostPattern('r[1:2]c[1:2]')).toEqual(['r1c1', 'r1c2', 'r2c1', 'r2c2']);
		expect(() => expandHostPattern('web[1:]')).toThrow(/two numbers or two letters/);
		expect(() => expandHostPattern('web[1:2')).toThrow(/unbalanced/);
	});

	it('splits host lines like a shell and reads values like Python literals', () => {
		expect(shellWords(`a k='x y' k2="q\\"z" k3=b\\ c # gone`)).toEqual(['a', 'k=x y', 'k2=q"z', 'k3=b c']);
		expect(parseLiteral('2222')).toBe(2222);
		expect(parseLiteral('10.0.0.1')).toBe('10.0.0.1');
		expect(parseLiteral('True')).toBe(true);
		expect(parseLiteral('[\'a\', "b"]')).toEqual(['a', 'b']);
		expect(parseLiteral("{'env': 'prod', 'n': 2}")).toEqual({ env: 'prod', n: 2 });
		expect(parseLiteral("'unterminated")).toBe("'unterminated");
	});

	it('tells the formats apart', () => {
		expect(detectFormat(ini)).toBe('ini');
		expect(detectFormat(yaml)).toBe('yaml');
		expect(detectFormat('---\nall:\n')).toBe('yaml');
		expect(detectFormat('web1:2222 ansible_user=x\n')).toBe('ini');
		expect(detectFormat('; comment\nweb1\n')).toBe('ini');
		expect(detectFormat('web1\n')).toBe('ini');
	});
});
