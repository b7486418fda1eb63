import { loadConfigOrExit } from '../config';
import { migrateDatabase } from '../db/migrate';
import { pipelineSeeds } from '../workflows/index';

/** `npm run migrate`: create the database if missing, apply migrations, seed the
 *  pipelines of the registry (idempotent; never overwrites an operator's edits). */
const config = loadConfigOrExit();
await migrateDatabase(config.DATABASE_URL, pipelineSeeds);
const safe = new URL(config.DATABASE_URL);
safe.password = '';
process.stdout.write(`migrated ${safe.host}${safe.pathname}\n`);
