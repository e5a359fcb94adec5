import type { Flow } from '../../src/lib/server/engine/flows';
import { sh } from '../../src/lib/server/ssh/shell';

const LOCK = '/var/lib/flotilla-testbed/engine-lock';
const LOG = '/var/lib/flotilla-testbed/engine.log';

/**
 * For crash and multi-instance tests on real hosts: `begin` takes a lock directory on the node (mkdir is
 * atomic, so a second task at once fails loudly) and logs `<ns> begin <task>`; `end` logs and releases.
 * The host's own log then shows whether any node ever ran two tasks at once.
 */
export const exclusiveFlow: Flow = {
	kind: 'test-exclusive',
	steps: [
		{
			name: 'begin',
			async do(ctx) {
				// A lock already there means another task is on this node now: logged, so the test sees it.
				await ctx.exec(
					sh`if mkdir ${LOCK}; then printf '%s begin %s\\n' "$(date +%s%N)" ${ctx.task.id} >> ${LOG}; else printf '%s collision %s\\n' "$(date +%s%N)" ${ctx.task.id} >> ${LOG}; exit 1; fi`
				);
			},
			async undo(ctx) {
				// Idempotent: a rollback repeated after a second crash logs (and releases) only once.
				await ctx.exec(
					sh`if [ -d ${LOCK} ]; then printf '%s end %s rollback\\n' "$(date +%s%N)" ${ctx.task.id} >> ${LOG}; rm -rf ${LOCK}; fi`
				);
			}
		},
		{
			name: 'work',
			async do(ctx) {
				await ctx.exec(sh`sleep 0.4`);
			}
		},
		{
			name: 'end',
			async do(ctx) {
				await ctx.exec(sh`printf '%s end %s\\n' "$(date +%s%N)" ${ctx.task.id} >> ${LOG} && rm -rf ${LOCK}`);
			}
		}
	],
	// After a crash: finished when the node logged this task's end, not begun when it logged nothing of it,
	// otherwise undo what started.
	async inspect(ctx) {
		const log = await ctx.exec(sh`cat ${LOG} 2>/dev/null || true`);
		const mine = log.stdout.split('\n').filter((l) => l.includes(ctx.task.id));
		if (!mine.length) return 'restart';
		return mine.at(-1)!.endsWith(`end ${ctx.task.id}`) ? 'completed' : 'rollback';
	}
};
