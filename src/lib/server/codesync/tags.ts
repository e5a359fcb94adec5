import { SEMVER } from '$lib/schemas/releases';
import { compareVersions } from '$lib/semver';

/**
 * Tag following (docs/code-sync.md, "Following tags"): a role whose `follow_tags` is a glob such as `v*` takes
 * as its latest only commits notified with a matching tag that is a semantic version (a leading `v` allowed),
 * and only when that version is higher than the one it has: `v1.10.0` wins over a later `v1.9.3`.
 */

/** `*` and `?` as in a shell; everything else literal. */
function globToRegExp(glob: string): RegExp {
	const body = glob
		.replace(/[.+^${}()|[\]\\/]/g, '\\$&')
		.replace(/\*/g, '.*')
		.replace(/\?/g, '.');
	return new RegExp(`^${body}$`);
}

/** The semantic version a tag names for a role following `glob`; null when the tag does not count. */
export function tagVersion(glob: string, tag: string | null | undefined): string | null {
	if (!tag || !globToRegExp(glob).test(tag)) return null;
	const version = tag.replace(/^v/, '');
	return SEMVER.test(version) ? version : null;
}

/** Whether `tag` should replace the role's current latest (tagged `current`, or nothing usable). */
export function supersedes(glob: string, tag: string | null | undefined, current: string | null | undefined): boolean {
	const next = tagVersion(glob, tag);
	if (!next) return false;
	const now = tagVersion(glob, current);
	return !now || compareVersions(next, now) > 0;
}
