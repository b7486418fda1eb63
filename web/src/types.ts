// Shapes returned by /api/etl (camelCase JSON). Extra fields are tolerated.

export type RunStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export type StepStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'skipped' | 'cancelled';
export type RunTrigger = 'schedule' | 'manual' | 'resume' | 'rerun';

export const RUN_STATUSES: readonly RunStatus[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];

export interface Attempt {
  attempt: number;
  status: string;
  startedAt: string | null;
  finishedAt: string | null;
  error: string | null;
}

export interface Step {
  key: string;
  position: number;
  status: StepStatus;
  attempts: number;
  startedAt: string | null;
  finishedAt: string | null;
  rowsIn: number | null;
  rowsOut: number | null;
  /** Rows the step rejected under the pipeline's badRows policy. */
  rowsRejected?: number;
  error: string | null;
  checkpoint: unknown;
  attemptsHistory?: Attempt[];
}

export interface Run {
  id: string;
  pipelineId: string;
  status: RunStatus;
  trigger: RunTrigger;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  error: string | null;
  parentRunId?: string | null;
  triggeredBy?: Actor | null;
  rows?: { in?: number; out?: number } | null;
  steps?: Step[];
}

export interface Pipeline {
  id: string;
  description: string | null;
  cron: string;
  timezone: string;
  enabled: boolean;
  nextFireAt: string | null;
  sandbox?: boolean;
  lastRun?: Run | null;
}

export interface Reject {
  dataset: string;
  row: number;
  page?: number;
  reason: string;
  path?: string;
  value: string;
}

export interface Dataset {
  dataset: string;
  key: string;
  kind: 'hash' | 'string' | 'table';
  pipelineId: string;
  rows: number | null;
  runId: string | null;
  updatedAt: string | null;
  ageSeconds: number | null;
  maxAgeSeconds: number;
  status: 'fresh' | 'stale' | 'never';
  reason?: string;
}

export interface RunsPage {
  runs: Run[];
  nextCursor: string | null;
}

export type LiveEvent =
  | { type: 'run'; runId: string; pipelineId: string; status: string }
  | { type: 'step'; runId: string; pipelineId: string; step: string; status: string };

/** A mounted view. `refresh` re-fetches; `onEvent` says whether a live event concerns it. */
export interface View {
  refresh(): Promise<void>;
  onEvent(ev: LiveEvent): boolean;
  dispose(): void;
}

export interface Actor {
  kind: 'session' | 'token' | 'schedule' | 'system';
  id?: string;
  name?: string;
}

/** Live figures of a running step (SSE `progress`, at most once a second per step). */
export interface ProgressEvent {
  type: 'progress';
  runId: string;
  pipelineId: string;
  step: string;
  attempt?: number;
  rowsDone: number;
  rowsTotal?: number;
  pagesDone?: number;
  rowsPerSec: number;
}

export interface StepEvent {
  at: string;
  type: string;
  message: string;
  data?: Record<string, unknown>;
}

export interface AttemptEvents {
  attempt: number;
  status: string;
  startedAt: string;
  finishedAt: string | null;
  dropped: number;
  events: StepEvent[];
}

export interface BulkResumeResult {
  matched: number;
  resumed: string[];
  skipped: { runId: string; pipelineId: string; reason: string; supersededBy?: string }[];
  dryRun: boolean;
}

export interface Tick {
  scheduledFor: string;
  outcome: string;
  runId: string | null;
  catchUp: boolean;
  detail: string | null;
  recordedAt: string;
  lagMs: number | null;
}

/** GET /alerts (SPEC §12): recent alerts with their webhook delivery state. */
export interface AlertItem {
  id: string;
  type: string;
  occurredAt: string;
  pipelineId: string | null;
  runId: string | null;
  dataset: string | null;
  summary: string;
  state: 'pending' | 'delivered' | 'failed' | 'skipped';
  attempts: number;
  lastError: string | null;
  lastStatus: number | null;
  nextAttemptAt: string | null;
  deliveredAt: string | null;
}
export interface AlertList {
  webhookConfigured: boolean;
  alerts: AlertItem[];
}
