import js from '@eslint/js';
import svelte from 'eslint-plugin-svelte';
import globals from 'globals';
import ts from 'typescript-eslint';
import svelteConfig from './svelte.config.js';

/** The code linter (`npm run lint:code`); formatting is Prettier's (`npm run lint`). */
export default ts.config(
	{
		ignores: ['build/', '.svelte-kit/', 'node_modules/', 'data/', 'test-results/', 'playwright-report/', 'drizzle/']
	},
	js.configs.recommended,
	...ts.configs.recommended,
	...svelte.configs.recommended,
	{
		languageOptions: { globals: { ...globals.browser, ...globals.node } }
	},
	{
		files: ['**/*.svelte', '**/*.svelte.ts', '**/*.svelte.js'],
		languageOptions: {
			parserOptions: { projectService: true, extraFileExtensions: ['.svelte'], parser: ts.parser, svelteConfig }
		}
	},
	{
		rules: {
			// Handlers keep the whole signature they are called with (a command table's `(args, io, m)`); a binding
			// named with a leading underscore is unused on purpose.
			'@typescript-eslint/no-unused-vars': ['error', { args: 'none', varsIgnorePattern: '^_' }],
			// The console is served at the root (no `paths.base`): a plain href is the route.
			'svelte/no-navigation-without-resolve': 'off',
			// URLSearchParams built inside a function to make a link are not state: nothing reacts to them.
			'svelte/prefer-svelte-reactivity': 'off',
			// `placeholder={'a\nb'}`: an attribute's quoted text would keep the backslash, the mustache is needed.
			'svelte/no-useless-mustaches': ['error', { ignoreStringEscape: true }]
		}
	}
);
