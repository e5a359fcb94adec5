import { defineConfig } from 'drizzle-kit';

// Generating migrations needs only the schema. Commands that talk to a database (push, studio) use
// DATABASE_URL when set and otherwise the embedded PGlite folder the console itself uses.
const url = process.env.DATABASE_URL;
const dataDir = process.env.FLOTILLA_DATA_DIR ?? './data';

export default defineConfig({
	schema: './src/lib/server/db/schema.ts',
	out: './drizzle',
	dialect: 'postgresql',
	strict: true,
	verbose: true,
	...(url ? { dbCredentials: { url } } : { driver: 'pglite', dbCredentials: { url: `${dataDir}/pglite` } })
});
