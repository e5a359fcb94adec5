import { z } from 'zod';
import { fromText, wrongType } from './common';
import { controlChars } from './provisioning';

/** The pull agent's request bodies (docs/pull-agent.md). */

export const agentStepNames = ['backup', 'pull', 'migrate', 'smoke', 'switch', 'health'] as const;
export type AgentStepName = (typeof agentStepNames)[number];

const versionSchema = z
	.string(wrongType('must be a string'))
	.regex(/^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/, 'must be a version (letters, digits, . _ + -)');

export const agentNextSchema = z.strictObject({ agent_version: versionSchema });

export const agentReportSchema = z.strictObject({
	job: z.uuid({ error: 'must be a UUID' }),
	/** 1, 2, 3… per job: a report resent after the agent restarted carries the number it had. */
	seq: z.number(wrongType('must be a number')).int('must be a whole number').min(1).max(1_000_000),
	step: z.enum([...agentStepNames, 'rollback'], { error: `must be one of ${agentStepNames.join(', ')}, rollback` }),
	/**
	 * `running`: a batch of the step's output while it runs, appended to what came before; the step's final
	 * report (`succeeded`/`failed`) brings the rest.
	 */
	status: z.enum(['running', 'succeeded', 'failed'], { error: 'must be running, succeeded or failed' }),
	exit_code: z.number(wrongType('must be a number')).int('must be a whole number').min(0).max(255).nullable(),
	output: z.string(wrongType('must be a string')).max(16_384)
});
export type AgentReport = z.infer<typeof agentReportSchema>;

/** How long an enrolment token lives: an hour unless the admin says otherwise, a day at most. */
export const ENROL_TOKEN_MINUTES = { default: 60, min: 5, max: 1440 } as const;

export const createEnrolTokenSchema = z.strictObject({
	expires_in_minutes: fromText(
		z
			.number(wrongType('must be a number of minutes'))
			.int('must be a whole number of minutes')
			.min(ENROL_TOKEN_MINUTES.min, `must be at least ${ENROL_TOKEN_MINUTES.min} minutes`)
			.max(ENROL_TOKEN_MINUTES.max, `must be at most ${ENROL_TOKEN_MINUTES.max} minutes`)
	).default(ENROL_TOKEN_MINUTES.default)
});
export type CreateEnrolToken = z.infer<typeof createEnrolTokenSchema>;

/**
 * The agent's exchange of its one-time token (in the `X-Flotilla-Enrol-Token` header) for its node's secret: the
 * node it believes it is, so that a token pasted onto the wrong node is refused rather than spent.
 */
/** A one-time enrolment token: 256 random bits in hex, a shape the agent's POSIX sh can check. */
export const enrolTokenPattern = /^[0-9a-f]{64}$/;

/**
 * How the enrolment's headers are documented: the node the agent believes it is (so that a token pasted onto the
 * wrong node is refused rather than spent) and its token. The endpoint refuses either missing or malformed with a
 * 401 naming it, as it refuses a signed request's headers.
 */
export const agentEnrolHeadersSchema = z.object({
	'x-flotilla-node': z.uuid().describe('The node’s id'),
	'x-flotilla-enrol-token': z.string().regex(enrolTokenPattern).describe('The one-time enrolment token')
});

const updateCommand = (required: boolean) => {
	const one = z
		.string(wrongType('must be a string'))
		.trim()
		.max(2000, 'must be at most 2000 characters')
		// A newline would end the value's line in the agent's environment file.
		.refine((v) => !controlChars.test(v), 'must be one line without control characters');
	return required ? one.min(1, 'is required: the agent runs it at every update') : one.optional();
};

/**
 * Installing the agent over SSH (docs/pull-agent.md, "Installing over SSH"): the node's update commands, as the
 * agent reads them from its environment. Empty optional fields are left out of the environment file.
 */
export const installAgentSchema = z.strictObject({
	backup_cmd: updateCommand(true),
	pull_cmd: updateCommand(true),
	migrate_cmd: updateCommand(true),
	smoke_cmd: updateCommand(true),
	switch_cmd: updateCommand(true),
	health_cmd: updateCommand(false),
	healthcheck_url: z
		.string(wrongType('must be a string'))
		.trim()
		.max(2000, 'must be at most 2000 characters')
		.refine((v) => v === '' || /^https?:\/\/[^\s]+$/.test(v), 'must be an http(s) URL')
		.optional(),
	rollback_cmd: updateCommand(false)
});
export type InstallAgentInput = z.infer<typeof installAgentSchema>;
