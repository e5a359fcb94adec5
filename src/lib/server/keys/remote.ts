import { createHash } from 'node:crypto';
import { StepFailed, type StepContext } from '$lib/server/engine';
import type { ExecResult, SshConnection } from '$lib/server/ssh/connection';
import { sh, type ShellCommand } from '$lib/server/ssh/shell';

/*
 * Reading and replacing the login user's ~/.ssh/authorized_keys. The file is read whole (base64, so every byte
 * comes back as it is), edited in the console, and written back through a temporary file in the same folder
 * that takes the old file's owner and mode and is renamed over it: sshd sees the old file or the new one, never
 * half of one. The write is refused when the file changed since it was read.
 */

/** Over this the file is not written back through a command line (the kernel's limit on one argument is 128 KiB). */
const MAX_FILE_BYTES = 48 * 1024;

export interface AuthorizedKeys {
	exists: boolean;
	content: string;
	/** sha256 of the content read, or `missing`: what the write checks the file still is. */
	hash: string;
	mode: string;
	owner: string;
	/** Whether sshd lets passwords in, and where that was read. */
	passwordLogin: 'yes' | 'no' | 'unknown';
	passwordSource: 'sshd -T' | 'sshd_config' | null;
}

export type Runner = (command: ShellCommand) => Promise<ExecResult>;

/** The write script's `exit 3`: the file is no longer what was read. */
const CHANGED_EXIT = 3;

/** Exported so the simulated hosts answer exactly what the console sends (src/lib/server/sim/authorized-keys.ts). */
export const readScript = sh`f="$HOME/.ssh/authorized_keys"
if [ -L "$f" ]; then echo "symlink"; exit 0; fi
if [ -e "$f" ]; then echo "file $(stat -c '%a %U:%G' -- "$f")"; base64 -w0 < "$f"; echo; else echo missing; echo; fi
p=$(sshd -T 2>/dev/null | awk 'tolower($1)=="passwordauthentication" {print tolower($2); exit}')
if [ -n "$p" ]; then echo "sshd-T $p"; else
  p=$(awk 'tolower($1)=="passwordauthentication" {print tolower($2); exit}' /etc/ssh/sshd_config 2>/dev/null)
  if [ -n "$p" ]; then echo "config $p"; elif [ -r /etc/ssh/sshd_config ]; then echo "config yes"; else echo "unknown"; fi
fi`;

export function parseRead(stdout: string): AuthorizedKeys {
	const [head = '', body = '', pw = ''] = stdout.split('\n');
	if (head === 'symlink')
		throw new StepFailed('~/.ssh/authorized_keys is a symbolic link: the console does not edit it');
	const exists = head.startsWith('file ');
	const [, mode = '', owner = ''] = head.split(' ');
	const content = exists ? Buffer.from(body, 'base64').toString('utf8') : '';
	const [source, value] = pw.split(' ');
	return {
		exists,
		content,
		hash: exists ? createHash('sha256').update(Buffer.from(body, 'base64')).digest('hex') : 'missing',
		mode: exists ? mode : '',
		owner: exists ? owner : '',
		passwordLogin: value === 'yes' || value === 'no' ? value : 'unknown',
		passwordSource: source === 'sshd-T' ? 'sshd -T' : source === 'config' ? 'sshd_config' : null
	};
}

function quiet(ctx: StepContext<unknown>): Runner {
	return async (command) => {
		const r = await ctx.ssh.exec(command, { deadlineMs: 30_000, signal: ctx.signal });
		if (r.cancelled) throw ctx.signal.reason ?? new StepFailed('cancelled');
		if (r.timedOut) throw new StepFailed('timed out after 30 s');
		return r;
	};
}

export function connectionRunner(conn: SshConnection): Runner {
	return (command) => conn.exec(command, { deadlineMs: 30_000 });
}

export async function readAuthorizedKeys(run: Runner | StepContext<unknown>): Promise<AuthorizedKeys> {
	const r = await (typeof run === 'function' ? run : quiet(run))(readScript);
	if (r.exitCode !== 0) throw new StepFailed(`could not read ~/.ssh/authorized_keys: ${r.stderr.trim()}`, r.exitCode);
	return parseRead(r.stdout);
}

/**
 * The write: checks the file is still what was read (`hash`), then renames the new content over it. Exported so
 * the simulated hosts answer exactly what the console sends.
 */
export const writeScript = (hash: string, base64: string): ShellCommand => sh`set -e
f="$HOME/.ssh/authorized_keys"
if [ -e "$f" ]; then now=$(sha256sum < "$f" | cut -c1-64); else now=missing; fi
if [ "$now" != ${hash} ]; then echo "~/.ssh/authorized_keys changed while the console edited it" >&2; exit 3; fi
if [ ! -e "$f" ]; then mkdir -p "$HOME/.ssh"; chmod 700 "$HOME/.ssh"; fi
tmp=$(mktemp "$f.flotilla-XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
printf '%s' ${base64} | base64 -d > "$tmp"
if [ -e "$f" ]; then chown --reference="$f" -- "$tmp"; chmod --reference="$f" -- "$tmp"; else chmod 600 -- "$tmp"; fi
mv -f -- "$tmp" "$f"
trap - EXIT`;

/** How often an edit is applied again to a file that changed between its read and its write. */
const EDIT_ATTEMPTS = 3;

/**
 * Applies `edit` to the file and replaces it with the result, keeping its owner and mode; nothing is written when
 * the edit changes nothing (resolves with whether it wrote). A file that changed between the read and the write (a configuration manager, a person
 * adding a key) is read again and the edit applied anew, since an edit is a function of the content alone; only
 * after EDIT_ATTEMPTS such races in a row does the phase fail.
 */
export async function editAuthorizedKeys(
	run: Runner | StepContext<unknown>,
	edit: (content: string) => string
): Promise<boolean> {
	const runner = typeof run === 'function' ? run : quiet(run);
	for (let attempt = 1; ; attempt++) {
		const before = await readAuthorizedKeys(runner);
		const next = edit(before.content);
		if (next === before.content) return false;
		const bytes = Buffer.from(next, 'utf8');
		if (bytes.length > MAX_FILE_BYTES) {
			throw new StepFailed(
				`~/.ssh/authorized_keys would be ${bytes.length} bytes: the console edits files up to ${MAX_FILE_BYTES}`
			);
		}
		const r = await runner(writeScript(before.hash, bytes.toString('base64')));
		if (r.exitCode === 0) return true;
		const why = r.stderr.trim().split('\n').at(-1) ?? '';
		if (r.exitCode !== CHANGED_EXIT || attempt === EDIT_ATTEMPTS) {
			throw new StepFailed(`could not write ~/.ssh/authorized_keys: ${why}`, r.exitCode);
		}
	}
}
