import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { metricsRegistry } from '../../src/lib/server/engine';
import { registerNotify } from '../../src/lib/server/notify/register';

const RULES = 'docs/prometheus/flotilla-rules.yml';

interface Rule {
	alert?: string;
	expr?: string;
	for?: string;
	labels?: Record<string, string>;
	annotations?: Record<string, string>;
}

describe('the Prometheus alerting rules in docs/', () => {
	registerNotify();
	const doc = parse(readFileSync(RULES, 'utf8')) as { groups: { name: string; rules: Rule[] }[] };
	const rules = doc.groups.flatMap((g) => g.rules);

	it('have the rule-file shape: named groups of alerts with an expression, a severity and a summary', () => {
		expect(doc.groups.length).toBeGreaterThan(0);
		expect(new Set(doc.groups.map((g) => g.name)).size).toBe(doc.groups.length);
		for (const r of rules) {
			expect(
				Object.keys(r).every((k) => ['alert', 'expr', 'for', 'labels', 'annotations'].includes(k)),
				r.alert
			).toBe(true);
			expect(r.alert).toMatch(/^[A-Za-z_][A-Za-z0-9_]*$/);
			expect(r.expr?.trim()).toBeTruthy();
			if (r.for) expect(r.for).toMatch(/^\d+[smhdwy]$/);
			expect(['info', 'warning', 'critical']).toContain(r.labels?.severity);
			expect(r.annotations?.summary).toBeTruthy();
		}
		expect(new Set(rules.map((r) => r.alert)).size).toBe(rules.length);
	});

	it('query only metrics the console exposes', () => {
		const names = new Set(rules.flatMap((r) => [...r.expr!.matchAll(/\bflotilla_[a-z_]+/g)].map((m) => m[0])));
		expect(names.size).toBeGreaterThan(5);
		for (const name of names) expect(metricsRegistry.getSingleMetric(name), name).toBeDefined();
	});

	// promtool comes with Debian's prometheus package, which scripts/bootstrap.sh installs for the tests.
	it('pass promtool check rules', () => {
		expect(execFileSync('promtool', ['check', 'rules', RULES], { encoding: 'utf8' })).toMatch(
			`SUCCESS: ${rules.length} rules found`
		);
	});
});
