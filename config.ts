import { z } from 'zod';

/**
 * The process configuration (SPEC §3). Parsed once in an entry point; everything else
 * receives values. Importing this module reads nothing.
 */
const url = (what: string) =>
  z.string().refine((s) => {
    try {
      new URL(s);
      return true;
    } catch {
      return false;
    }
  }, `${what} must be a URL`);

/**
 * Values that are documented or copied rather than generated (.env.example's, common
 * stand-ins): a secret equal to one of these, or made of one repeated character, is refused
 * at start, so an unedited .env cannot run with a guessable token.
 */
const PLACEHOLDER = /change[-_ ]?me|replace[-_ ]?me|your[-_ ]?(api[-_ ]?)?(token|secret)|placeholder|^(secret|password|token|example|test|dev|admin)\d*$|^<.*>$/i;
export const isPlaceholderSecret = (v: string) => PLACEHOLDER.test(v) || /^(.)\1*$/.test(v);

const secret = (name: string, min = 16) =>
  z.string().min(min, `${name} must be at least ${min} characters`)
    .refine((v) => !isPlaceholderSecret(v), `${name} is a placeholder value; generate one, e.g. \`openssl rand -hex 32\``);

const csv = z.string().transform((v) => v.split(',').map((x) => x.trim()).filter((x) => x !== ''));

export const configSchema = z.object({
  DATABASE_URL: url('DATABASE_URL').default('postgres://postgres@127.0.0.1:5432/etl'),
  REDIS_URL: url('REDIS_URL').default('redis://127.0.0.1:6379'),
  PORT: z.coerce.number().int().min(1).max(65535).default(3000),
  /** Interface the api listens on; unset means all (containers). `npm start` uses 127.0.0.1. */
  HOST: z.string().regex(/^[A-Za-z0-9.:_-]{1,255}$/, 'HOST must be a host name or IP address').optional(),
  ETL_API_TOKEN: secret('ETL_API_TOKEN').optional(),
  SESSION_COOKIE: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'SESSION_COOKIE must be a cookie name').default('mc_sess'),
  /** SP0's cookie-signing secret: when set, signed session cookies (`<id>.<sig>`, `s:` prefix) are verified. */
  SESSION_SECRET: secret('SESSION_SECRET').optional(),
  /** Session roles that may change state (SPEC §7); any valid session may read. */
  ETL_OPERATOR_ROLES: csv.pipe(z.array(z.string().max(100)).min(1, 'ETL_OPERATOR_ROLES must name at least one role')).default(['admin']),
  /** When set, GET /metrics needs `Authorization: Bearer $METRICS_TOKEN`. */
  METRICS_TOKEN: secret('METRICS_TOKEN').optional(),
  /** Open SSE streams per api process; past it /events answers 503. */
  SSE_MAX_STREAMS: z.coerce.number().int().min(1).max(100_000).default(500),
  CRED_SERVICE_URL: url('CRED_SERVICE_URL').optional(),
  CRED_SERVICE_TOKEN: secret('CRED_SERVICE_TOKEN', 1).optional(),
  BIGQUERY_API_ENDPOINT: url('BIGQUERY_API_ENDPOINT').optional(),
  CLICKHOUSE_URL: url('CLICKHOUSE_URL').optional(),
  YESPO_BASE_URL: url('YESPO_BASE_URL').default('https://yespo.io/api/v1'),
  /** BullMQ queue name; tests give every file its own. */
  ETL_QUEUE: z.string().regex(/^[A-Za-z0-9_-]+$/).default('etl'),
  /** Steps a worker process runs at once (I/O bound; the worker has one CPU). */
  WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(16),
  /** Days that step checkpoints of finished runs are kept for resume / rerun. */
  CHECKPOINT_RETENTION_DAYS: z.coerce.number().int().min(1).max(365).default(14),
  /** The worker's heartbeat file, read by its container healthcheck (scripts/healthcheck.ts). */
  WORKER_HEARTBEAT_FILE: z.string().min(1).default('/tmp/etl-worker.heartbeat'),
  /** The healthcheck fails when the last healthy heartbeat is older than this. */
  HEARTBEAT_STALE_MS: z.coerce.number().int().min(1_000).default(30_000),
  /** The standalone api runs as a node:cluster of this many processes on PORT (1: no cluster). */
  API_WORKERS: z.coerce.number().int().min(1).max(64).default(1),
  /** Alerts (SPEC §12): the webhook the worker POSTs alert JSON to; unset, alerts are only recorded. */
  ALERT_WEBHOOK_URL: url('ALERT_WEBHOOK_URL').optional(),
  /** Signs each alert body: `X-ETL-Signature: sha256=<hex HMAC-SHA256>`. A secret: never logged. */
  ALERT_WEBHOOK_SECRET: secret('ALERT_WEBHOOK_SECRET').optional(),
  /** The public base URL of the /etl page, for the alerts' `url` (e.g. https://etl.example.com). */
  ETL_PUBLIC_URL: url('ETL_PUBLIC_URL').optional(),
  /** Alert delivery timing; the defaults are the contract, tests shorten them. */
  ALERT_POLL_MS: z.coerce.number().int().min(50).max(10_000).default(1_000),
  ALERT_BACKOFF_BASE_MS: z.coerce.number().int().min(10).max(60_000).default(2_000),
  ALERT_BACKOFF_MAX_MS: z.coerce.number().int().min(10).max(60_000).default(60_000),
  ALERT_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(10_000),
  ALERT_LEASE_MS: z.coerce.number().int().min(200).max(600_000).default(30_000),
  /** How long an undeliverable alert is retried before it is marked failed (default a day). */
  ALERT_RETRY_FOR_MS: z.coerce.number().int().min(1_000).default(24 * 3_600_000),
  /** How often dataset staleness and overdue ticks are evaluated (SPEC: at least every 15 s). */
  ALERT_EVAL_MS: z.coerce.number().int().min(100).max(15_000).default(10_000),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Built-in sandbox sources (npm start starts them): a pipeline whose credential is
   *  configured nowhere reads from these instead, and is labelled sandbox. */
  SANDBOX_BIGQUERY_URL: url('SANDBOX_BIGQUERY_URL').optional(),
  SANDBOX_CLICKHOUSE_URL: url('SANDBOX_CLICKHOUSE_URL').optional(),
  SANDBOX_YESPO_URL: url('SANDBOX_YESPO_URL').optional(),
});

export type Config = z.infer<typeof configSchema>;

export class ConfigError extends Error {}

/** Parses env; throws one ConfigError naming the first bad variable (never its value). */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = configSchema.safeParse(cleaned);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const name = String(issue.path[0] ?? 'config');
    throw new ConfigError(`invalid configuration: ${name}: ${issue.message}`);
  }
  return parsed.data;
}

/** Entry-point helper: print one clear line and exit on a bad variable. */
export function loadConfigOrExit(env: Record<string, string | undefined> = process.env): Config {
  try {
    return loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}
