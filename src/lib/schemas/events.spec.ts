import { describe, expect, it } from 'vitest';
import { hostileStrings } from '../../../tests/fixtures/hostile-strings';
import { eventTypes, eventTypesSchema, matchesEventTypes } from './events';
import { eventStreamHeadersSchema, eventStreamQuerySchema, lastEventIdSchema } from './runs';

describe('?types= of the event streams', () => {
	it('takes known types and families, trimmed and without repeats', () => {
		expect(eventTypesSchema.parse('run.state, task.*,run.state')).toEqual(['run.state', 'task.*']);
		for (const t of eventTypes) expect(eventTypesSchema.parse(t)).toEqual([t]);
	});

	it('refuses an empty list, an unknown type or family, and anything else', () => {
		for (const bad of ['', ' , ', 'run.bogus', 'nope.*', '*', 'task.', 'run.state;x', 'run.%']) {
			expect(eventTypesSchema.safeParse(bad).success, bad).toBe(false);
		}
		for (const hostile of hostileStrings('run.state'))
			expect(eventTypesSchema.safeParse(hostile).success, hostile).toBe(false);
		const refused = eventTypesSchema.safeParse('run.state,task.bogus');
		expect(refused.success).toBe(false);
		expect(refused.error?.issues[0]?.message).toMatch(/unknown event type task\.bogus/);
	});

	it('matches a type against exact types and families', () => {
		expect(matchesEventTypes(['task.*'], 'task.output')).toBe(true);
		expect(matchesEventTypes(['task.*'], 'run.state')).toBe(false);
		expect(matchesEventTypes(['run.state'], 'run.created')).toBe(false);
		expect(matchesEventTypes(['run.created', 'run.state'], 'run.state')).toBe(true);
	});
});

describe('Last-Event-ID and ?after= of the event streams', () => {
	it('take plain digits as an event id, and nothing else', () => {
		expect(lastEventIdSchema.parse('0')).toBe(0);
		expect(lastEventIdSchema.parse('4711')).toBe(4711);
		for (const bad of ['', ' ', ' 1', '-1', '1.5', '1e3', '0x10', 'abc', '99999999999999999999']) {
			expect(lastEventIdSchema.safeParse(bad).success, JSON.stringify(bad)).toBe(false);
		}
	});

	it('name the field they refuse', () => {
		const query = eventStreamQuerySchema.safeParse({ after: 'x', types: 'run.bogus' });
		expect(query.error?.issues.map((i) => i.path.join('.')).sort()).toEqual(['after', 'types']);
		const header = eventStreamHeadersSchema.safeParse({ 'Last-Event-ID': '-1' });
		expect(header.error?.issues.map((i) => i.path.join('.'))).toEqual(['Last-Event-ID']);
		expect(eventStreamQuerySchema.parse({ after: '7', types: 'task.*' })).toEqual({ after: 7, types: ['task.*'] });
		expect(eventStreamQuerySchema.parse({})).toEqual({});
	});
});
