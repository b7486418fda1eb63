import { defineConfig } from 'drizzle-kit';

export default defineConfig({
  dialect: 'postgresql',
  schema: './db/schema.ts',
  out: './db/migrations',
  // As db/migrate.ts: our history never shares drizzle's default table with SP0's.
  migrations: { schema: 'etl', table: '__drizzle_migrations' },
});
