import { sql } from 'drizzle-orm';
import { db, rowsOf } from './index';

/**
 * Deletes the rows of an append-only table older than `days` (by `timeColumn`), in batches of `batchSize`
 * rows, oldest first, each batch its own statement: a large backlog never holds one long transaction or a
 * lock on millions of rows. The boundary is found by walking the primary key from the oldest row to the first
 * one recent enough to keep, so no index on the time column is needed (ids grow with time in these tables)
 * and a table with nothing to prune costs one row read. Returns how many rows went.
 */
export async function pruneOlderThan(
	table: string,
	timeColumn: string,
	days: number,
	batchSize: number
): Promise<number> {
	const t = sql.identifier(table);
	const at = sql.identifier(timeColumn);
	// The first row to keep; everything below its id goes. No such row: every row is old.
	const [boundary] = rowsOf<{ id: string | number | null }>(
		await db().execute(sql`
			select coalesce(
				(select id from ${t} where ${at} >= now() - make_interval(days => ${days}) order by id limit 1),
				(select max(id) + 1 from ${t})
			) as id`)
	);
	if (boundary?.id === null || boundary?.id === undefined) return 0;
	const below = Number(boundary.id);
	let total = 0;
	for (;;) {
		const [row] = rowsOf<{ n: string | number }>(
			await db().execute(sql`
				with gone as (
					delete from ${t} where id in (select id from ${t} where id < ${below} order by id limit ${batchSize})
					returning 1
				)
				select count(*) as n from gone`)
		);
		const deleted = Number(row?.n ?? 0);
		total += deleted;
		if (deleted < batchSize) return total;
	}
}
