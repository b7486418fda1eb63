// A BigQuery REST emulator: just enough of /bigquery/v2 for the official
// @google-cloud/bigquery v8 client to run queries and page through results.
// It is the sandbox for `npm start` without Google credentials and the
// BigQuery fake in tests. Every query "runs" instantly (jobComplete: true) and
// reads a lazily generated SandboxTable chosen by the table name after FROM.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { listen, pushCapped, readBody, sendJson, sendRawJson } from './http-util.js';
import {
  bqErrorBody,
  encodeRows,
  limitFromSql,
  schemaJson,
  tableNameFromSql,
  tableRefFromSql,
  timestampFormat,
  type SandboxTable,
  type TimestampFormat,
} from './bigquery-wire.js';

export type { SandboxTable, SandboxColumn, SandboxColumnType } from './bigquery-wire.js';

export interface BigQueryEmulator {
  /** Pass as `apiEndpoint` to `new BigQuery(...)`. */
  url: string;
  close(): Promise<void>;
  /** Newest 10,000 requests; `search` is the raw query string ("" or "?..."). */
  requests: { method: string; path: string; search: string }[];
}

interface EmulatedJob {
  projectId: string;
  jobId: string;
  query: string;
  tableName: string;
  /** Rows the query returns: table rowCount capped by LIMIT. */
  totalRows: number;
  createdMs: number;
}

/** BigQuery's own cap on rows per page is by bytes; a row cap keeps pages bounded. */
const MAX_PAGE_ROWS = 10_000;
/** Jobs are tiny, but a long-running sandbox should not keep them forever. */
const MAX_JOBS = 10_000;
const LOCATION = 'US';

/** Everything one emulator instance holds; the request handlers below share it. */
interface EmulatorState {
  tables: Record<string, SandboxTable>;
  jobs: Map<string, EmulatedJob>;
  requests: BigQueryEmulator['requests'];
}

export async function startBigQueryEmulator(opts: {
  port?: number;
  host?: string;
  tables: Record<string, SandboxTable>;
}): Promise<BigQueryEmulator> {
  const st: EmulatorState = { tables: opts.tables, jobs: new Map(), requests: [] };

  const listening = await listen((req, res) => {
    handleRequest(st, req, res).catch((err: unknown) => {
      if (res.headersSent) return void res.destroy();
      sendJson(res, 500, bqErrorBody(500, 'internalError', `emulator error: ${(err as Error).message}`));
    });
  }, opts);

  return { url: listening.url, close: () => listening.close(), requests: st.requests };
}

/** Routes /bigquery/v2/projects/{p}/(queries|jobs)[/{jobId}]; anything else gets BigQuery's error shape. */
async function handleRequest(st: EmulatorState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://emulator');
  const method = req.method ?? 'GET';
  pushCapped(st.requests, { method, path: url.pathname, search: url.search });

  const m = /^\/bigquery\/v2\/projects\/([^/]+)\/(queries|jobs)(?:\/([^/]+))?$/.exec(url.pathname);
  if (!m) return sendJson(res, 404, bqErrorBody(404, 'notFound', `Not found: URL ${url.pathname}`));
  const projectId = decodeURIComponent(m[1]);
  const collection = m[2] as 'queries' | 'jobs';
  const jobId = m[3] === undefined ? undefined : decodeURIComponent(m[3]);

  if (method === 'POST' && jobId === undefined) {
    const body = parseJsonBody(await readBody(req));
    if (body === undefined) return sendJson(res, 400, bqErrorBody(400, 'parseError', 'Parse Error'));
    return collection === 'queries' ? jobsQuery(st, res, projectId, body) : jobsInsert(st, res, projectId, body);
  }
  if (method === 'GET' && jobId !== undefined) {
    const job = st.jobs.get(jobKey(projectId, jobId));
    if (!job) {
      return sendJson(res, 404, bqErrorBody(404, 'notFound', `Not found: Job ${projectId}:${LOCATION}.${jobId}`));
    }
    return collection === 'queries' ? getQueryResults(st, res, job, url.searchParams) : sendJson(res, 200, jobResource(job));
  }
  sendJson(res, 405, bqErrorBody(405, 'methodNotAllowed', `${method} not supported on ${url.pathname}`));
}

/** Register a job for `query`, or answer with BigQuery's 404 for an unknown table. */
function createJob(st: EmulatorState, res: ServerResponse, projectId: string, jobId: string, query: unknown): EmulatedJob | null {
  if (typeof query !== 'string' || query.trim() === '') {
    sendJson(res, 400, bqErrorBody(400, 'invalid', 'Query text is required'));
    return null;
  }
  const tableName = tableNameFromSql(query);
  const table = tableName === null ? undefined : st.tables[tableName];
  if (tableName === null || table === undefined) {
    const ref = tableRefFromSql(query);
    sendJson(res, 404, bqErrorBody(404, 'notFound', `Not found: Table ${ref} was not found in location ${LOCATION}`));
    return null;
  }
  if (st.jobs.has(jobKey(projectId, jobId))) {
    sendJson(res, 409, bqErrorBody(409, 'duplicate', `Already Exists: Job ${projectId}:${LOCATION}.${jobId}`));
    return null;
  }
  const limit = limitFromSql(query);
  const job: EmulatedJob = {
    projectId,
    jobId,
    query,
    tableName,
    totalRows: limit === null ? table.rowCount : Math.min(limit, table.rowCount),
    createdMs: Date.now(),
  };
  st.jobs.set(jobKey(projectId, jobId), job);
  // Map keeps insertion order, so the first key is the oldest job.
  if (st.jobs.size > MAX_JOBS) st.jobs.delete(st.jobs.keys().next().value as string);
  return job;
}

/** jobs.query: create a job and return its first page inline. */
function jobsQuery(st: EmulatorState, res: ServerResponse, projectId: string, body: Record<string, unknown>): void {
  const job = createJob(st, res, projectId, `job_${randomUUID().replace(/-/g, '')}`, body.query);
  if (!job) return;
  const fmt = (body.formatOptions ?? {}) as Record<string, unknown>;
  sendPage(st, res, job, 0, pageSize(body.maxResults), timestampFormat(fmt), 'bigquery#queryResponse');
}

/** jobs.insert of a query job (what createQueryJob sends). */
function jobsInsert(st: EmulatorState, res: ServerResponse, projectId: string, body: Record<string, unknown>): void {
  const config = body.configuration as { query?: { query?: unknown } } | undefined;
  if (!config?.query) return sendJson(res, 400, bqErrorBody(400, 'invalid', 'Only query jobs are emulated'));
  const ref = (body.jobReference ?? {}) as { jobId?: unknown };
  const jobId = typeof ref.jobId === 'string' && ref.jobId !== '' ? ref.jobId : `job_${randomUUID()}`;
  const job = createJob(st, res, projectId, jobId, config.query.query);
  if (job) sendJson(res, 200, jobResource(job));
}

/** jobs.getQueryResults: pageToken wins over startIndex, as in BigQuery. */
function getQueryResults(st: EmulatorState, res: ServerResponse, job: EmulatedJob, qs: URLSearchParams): void {
  let start = 0;
  const token = qs.get('pageToken');
  if (token) {
    const decoded = decodePageToken(token);
    if (decoded === null) return sendJson(res, 400, bqErrorBody(400, 'invalid', 'Invalid page token'));
    start = decoded;
  } else if (qs.get('startIndex')) {
    start = Number(qs.get('startIndex'));
    if (!Number.isSafeInteger(start) || start < 0) {
      return sendJson(res, 400, bqErrorBody(400, 'invalid', 'Invalid startIndex'));
    }
  }
  const fmt = timestampFormat({
    useInt64Timestamp: qs.get('formatOptions.useInt64Timestamp') ?? undefined,
    timestampOutputFormat: qs.get('formatOptions.timestampOutputFormat') ?? undefined,
  });
  sendPage(st, res, job, start, pageSize(qs.get('maxResults')), fmt, 'bigquery#getQueryResultsResponse');
}

function sendPage(
  st: EmulatorState,
  res: ServerResponse,
  job: EmulatedJob,
  start: number,
  size: number,
  ts: TimestampFormat,
  kind: string,
): void {
  const table = st.tables[job.tableName];
  if (!table) return sendJson(res, 404, bqErrorBody(404, 'notFound', `Not found: Table ${job.tableName}`));
  const from = Math.min(start, job.totalRows);
  const to = Math.min(from + size, job.totalRows);
  const head: Record<string, unknown> = {
    kind,
    schema: schemaJson(table),
    jobReference: { projectId: job.projectId, jobId: job.jobId, location: LOCATION },
    totalRows: String(job.totalRows),
    totalBytesProcessed: '0',
    jobComplete: true,
    cacheHit: false,
  };
  if (to < job.totalRows) head.pageToken = encodePageToken(to);
  // Like BigQuery, an empty page has no `rows` member at all.
  const json = JSON.stringify(head);
  const body = to > from ? `${json.slice(0, -1)},"rows":${encodeRows(table, from, to, ts)}}` : json;
  sendRawJson(res, 200, body);
}

function jobResource(job: EmulatedJob): unknown {
  const ms = String(job.createdMs);
  return {
    kind: 'bigquery#job',
    id: `${job.projectId}:${LOCATION}.${job.jobId}`,
    jobReference: { projectId: job.projectId, jobId: job.jobId, location: LOCATION },
    configuration: { jobType: 'QUERY', query: { query: job.query, useLegacySql: false } },
    status: { state: 'DONE' },
    statistics: {
      creationTime: ms,
      startTime: ms,
      endTime: ms,
      totalBytesProcessed: '0',
      query: { totalBytesProcessed: '0', statementType: 'SELECT', cacheHit: false },
    },
  };
}

function jobKey(projectId: string, jobId: string): string {
  return `${projectId}\u0000${jobId}`;
}

function pageSize(maxResults: unknown): number {
  const n = Number(maxResults);
  return maxResults !== undefined && maxResults !== null && Number.isFinite(n) && n > 0
    ? Math.min(Math.floor(n), MAX_PAGE_ROWS)
    : MAX_PAGE_ROWS;
}

// Tokens are opaque to clients; an offset with a prefix lets us reject junk.
function encodePageToken(offset: number): string {
  return Buffer.from(`off:${offset}`).toString('base64url');
}

function decodePageToken(token: string): number | null {
  const m = /^off:(\d+)$/.exec(Buffer.from(token, 'base64url').toString('utf8'));
  return m?.[1] ? Number(m[1]) : null;
}

function parseJsonBody(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
