import { codeSyncFlow } from '$lib/server/codesync/flow';
import { checkFlow } from '$lib/server/fleet/check-flow';
import { registerFlow } from './flows';

/** The flows the console ships; each feature adds its own here. */
export function registerBuiltinFlows(): void {
	registerFlow(checkFlow);
	registerFlow(codeSyncFlow);
}

/** Kinds an operator may start directly through POST /api/runs (others start from their own feature's endpoints). */
export const startableKinds = ['check'] as const;
