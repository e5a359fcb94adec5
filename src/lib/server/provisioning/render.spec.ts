import { describe, expect, it } from 'vitest';
import {
	provisionSchema,
	provisioningDefinitionSchema,
	secretsUsed,
	templateProblems
} from '$lib/schemas/provisioning';
import { renderTemplate } from './render';

const role = { name: 'web', path: '/opt/web', method: 'push' as const };
const def = { role: 'web', serviceUser: 'websvc' };

describe('provisioning templates', () => {
	it('fills the role’s facts and its secrets, ending with a newline', () => {
		const text = renderTemplate(
			'A={{ role }} U={{user}} E={{ env_file }} P={{ path }} W={{ workdir }}\nS={{ secret.DB }}',
			role,
			def,
			{ DB: 'p@ss w0rd $HOME `id`' }
		);
		expect(text).toBe('A=web U=websvc E=/etc/web/web.env P=/opt/web W=/opt/web/current\nS=p@ss w0rd $HOME `id`\n');
	});

	it('uses the role’s name as its account when none is set', () => {
		expect(renderTemplate('{{ user }}', role, { role: 'web', serviceUser: null })).toBe('web\n');
	});

	it('refuses a secret that is not there instead of writing an empty value', () => {
		expect(() => renderTemplate('S={{ secret.GONE }}', role, def, {})).toThrow(/GONE/);
	});

	it('knows which placeholders a template may name', () => {
		expect(templateProblems('{{ role }} {{ secret.X }}', true)).toEqual([]);
		expect(templateProblems('{{ secret.X }}', false)[0]).toMatch(/env file/);
		expect(templateProblems('{{ ../../etc/shadow }}', true)[0]).toMatch(/not a known placeholder/);
		expect(templateProblems('{{ secret.lower }}', true)[0]).toMatch(/not a known placeholder/);
		expect(secretsUsed('{{ secret.A }} {{secret.B}} {{ role }}')).toEqual(['A', 'B']);
	});
});

describe('provisioning input', () => {
	it('takes the phases in order only, each once', () => {
		expect(provisionSchema.safeParse({ role: 'web', phases: ['clean', 'verify'] }).success).toBe(true);
		for (const phases of [['verify', 'clean'], ['deploy', 'deploy'], [], ['reboot']]) {
			const r = provisionSchema.safeParse({ role: 'web', phases });
			expect(r.success, JSON.stringify(phases)).toBe(false);
			expect(r.error!.issues[0]!.path[0]).toBe('phases');
		}
	});

	it('refuses unit names that could leave /etc/systemd/system, and names that are not units', () => {
		for (const name of ['../x.service', 'a/b.service', '..service', 'x', '-x.service', 'x.service\n']) {
			const r = provisioningDefinitionSchema.safeParse({ unit_templates: [{ name, template: 'x' }] });
			expect(r.success, name).toBe(false);
		}
		expect(
			provisioningDefinitionSchema.safeParse({ unit_templates: [{ name: 'web@1.service', template: 'x' }] }).success
		).toBe(true);
	});

	it('refuses secret values that would break the env file’s lines', () => {
		for (const value of ['a\nB=1', 'a\rb', '', 'a\u0000']) {
			expect(provisioningDefinitionSchema.safeParse({ secrets: { A: value } }).success, JSON.stringify(value)).toBe(
				false
			);
		}
		expect(provisioningDefinitionSchema.safeParse({ secrets: { A: null } }).success).toBe(true);
	});
});
