import type { Redis } from 'ioredis';
import type { Database } from '../db/client';
import type { Actor } from '../db/schema';
import type { Logger } from '../lib/logger';
import type { Registry } from '../workflows/engine/define';
import type { Engine } from '../workflows/engine/engine';

/**
 * Who made an /api/etl request; set by the auth middleware, never holds the credential.
 * `operator` says whether it may change state (SPEC §7 roles); `actor` is what the audit
 * trail records. A session principal keeps its id so a live stream can re-check it.
 */
export type Principal =
  | { kind: 'token'; operator: true; actor: Actor }
  | { kind: 'session'; operator: boolean; actor: Actor; sessionId: string; expiresAt: number | null };

export interface AppEnv {
  Variables: { principal: Principal };
}

/**
 * Listens to event JSON strings; `onEnd` is called when the source shuts down (so open
 * streams end and the server can close). Returns the unsubscribe function.
 */
export type SubscribeEvents = (listener: (data: string) => void, onEnd?: () => void) => () => void;

export interface AppDeps {
  db: Pick<Database, 'pool'>;
  /** Session lookups (`mc:sess:<id>`) and the readiness probe. */
  redis: Redis;
  engine: Pick<Engine, 'trigger' | 'retryStep' | 'resume' | 'rerunFrom' | 'cancel' | 'bulkResume' | 'queue'> & Partial<Pick<Engine, 'events'>>;
  config: {
    apiToken?: string;
    sessionCookie: string;
    allowedOrigins?: string[];
    /** SP0's cookie-signing secret (SESSION_SECRET). */
    sessionSecret?: string;
    /** Roles that may change state (ETL_OPERATOR_ROLES, default ['admin']). */
    operatorRoles?: string[];
    /** When set, /metrics needs it as a bearer token. */
    metricsToken?: string;
    /** ALERT_WEBHOOK_URL is set (shown by GET /alerts; the workers send). */
    alertWebhookConfigured?: boolean;
  };
  log: Logger;
  /** The process-wide event hub (server/sse.ts); without it /events answers 503. */
  subscribeEvents?: SubscribeEvents;
  /** Workflow definitions: lets a pipeline show its step keys. */
  registry?: Registry;
  /** Directory of the built /etl page (web/dist); served only when given. */
  webDir?: string;
  /** SSE tuning (tests shorten the heartbeat). */
  sse?: { heartbeatMs?: number; maxPending?: number; maxStreams?: number; sessionCheckMs?: number };
  /** In a node:cluster worker (server/cluster.ts): /metrics answers for every process of the cluster. */
  metricsCluster?: { register(registry: import('prom-client').Registry): void; metrics(): Promise<string> };
  /** Whether a pipeline reads the built-in sandbox sources (no credentials configured). */
  sandbox?: (pipeline: { id: string; workflow: string; config: Record<string, unknown> }) => Promise<boolean>;
}
