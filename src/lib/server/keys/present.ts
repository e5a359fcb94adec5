import type { RotationView } from './rotation';

/**
 * What the API answers for a key rotation (docs/ssh-key-rotation.md, "API"): the same view the Settings page
 * shows, in the API's snake_case.
 */
export function presentKeyRotation(r: RotationView) {
	const namesIn = (state: string) => r.nodes.filter((n) => n.state === state).map((n) => n.nodeName);
	return {
		id: r.id,
		number: r.number,
		state: r.state,
		phase: r.phase,
		credential: {
			from: { id: r.oldCredentialId, name: r.oldCredential },
			to: { id: r.newCredentialId, name: r.newCredential }
		},
		safety_net: { id: r.safetyNetCredentialId, name: r.safetyNetCredential },
		remove_safety_net: r.removeSafetyNet,
		aborted_phase: r.abortedPhase,
		abort_reason: r.abortReason,
		phases: r.phases.map((p) => ({
			phase: p.phase,
			run_id: p.runId,
			state: p.state,
			nodes: p.nodes,
			problems: p.problems,
			started_at: p.startedAt,
			ended_at: p.endedAt
		})),
		nodes: r.nodes.map((n) => ({
			node_id: n.nodeId,
			node: n.nodeName,
			state: n.state,
			reached: n.reached,
			error: n.error
		})),
		deferred_nodes: namesIn('deferred'),
		cleanup_pending_nodes: namesIn('cleanup'),
		catch_up_run_id: r.catchUpRunId,
		created_by: r.createdBy,
		created_at: r.createdAt.toISOString(),
		ended_at: r.endedAt?.toISOString() ?? null
	};
}
