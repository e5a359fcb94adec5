// Lets plain `node` run the console's TypeScript modules in a child process (tests that kill and restart
// an engine): Node strips the types itself; this resolves SvelteKit's `$lib` alias and extensionless imports, and
// loads Vite's `?raw` imports (a file's text as the default export: the agent script the console installs).
import { readFileSync } from 'node:fs';
import { registerHooks } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const lib = path.resolve('src/lib');

registerHooks({
	resolve(specifier, context, next) {
		if (specifier.startsWith('$lib/')) specifier = pathToFileURL(path.join(lib, specifier.slice(5))).href;
		try {
			return next(specifier, context);
		} catch (err) {
			if (!['ERR_MODULE_NOT_FOUND', 'ERR_UNSUPPORTED_DIR_IMPORT'].includes(err.code)) throw err;
			for (const suffix of ['.ts', '/index.ts']) {
				try {
					return next(specifier + suffix, context);
				} catch {
					// try the next form
				}
			}
			throw err;
		}
	},
	load(url, context, next) {
		if (!url.endsWith('?raw')) return next(url, context);
		const text = readFileSync(fileURLToPath(url.slice(0, -'?raw'.length)), 'utf8');
		return { format: 'module', source: `export default ${JSON.stringify(text)};`, shortCircuit: true };
	}
});
