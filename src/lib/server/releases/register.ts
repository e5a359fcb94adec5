import { releaseKeys } from './keys';

/** Releases' part of the console: the release keys are read now, so a bad key stops start-up, not an upload. */
export function registerReleases(): void {
	releaseKeys();
}
