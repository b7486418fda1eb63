import type pg from 'pg';

type Q = Pick<pg.Pool, 'query'>;

export interface PipelineSeed {
  id: string;
  workflow: string;
  description: string;
  cron: string;
  timezone: string;
  config: Record<string, unknown>;
  concurrency?: 'forbid' | 'allow';
  catchup?: 'none' | 'latest' | 'all';
}

export interface PipelineRow {
  id: string;
  workflow: string;
  description: string;
  cron: string;
  timezone: string;
  enabled: boolean;
  config: Record<string, unknown>;
  concurrency: 'forbid' | 'allow';
  catchup: 'none' | 'latest' | 'all';
  catchupCap: number;
  createdAt: Date;
  updatedAt: Date;
}

const COLS = `id, workflow, description, cron, timezone, enabled, config, concurrency, catchup,
  catchup_cap as "catchupCap", created_at as "createdAt", updated_at as "updatedAt"`;

/** Inserts missing pipelines, disabled; never overwrites what an operator changed. */
export async function seedPipelines(q: Q, seeds: readonly PipelineSeed[]): Promise<void> {
  for (const s of seeds) {
    await q.query(
      `insert into etl_pipelines (id, workflow, description, cron, timezone, enabled, config, concurrency, catchup)
       values ($1, $2, $3, $4, $5, false, $6, $7, $8) on conflict (id) do nothing`,
      [s.id, s.workflow, s.description, s.cron, s.timezone, JSON.stringify(s.config), s.concurrency ?? 'forbid', s.catchup ?? 'none'],
    );
  }
}

export async function getPipeline(q: Q, id: string): Promise<PipelineRow | null> {
  const { rows } = await q.query<PipelineRow>(`select ${COLS} from etl_pipelines where id = $1`, [id]);
  return rows[0] ?? null;
}

export async function listPipelines(q: Q): Promise<PipelineRow[]> {
  const { rows } = await q.query<PipelineRow>(`select ${COLS} from etl_pipelines order by id`);
  return rows;
}

export async function updatePipeline(
  q: Q,
  id: string,
  patch: Partial<Pick<PipelineRow, 'enabled' | 'cron' | 'timezone' | 'config' | 'concurrency' | 'catchup' | 'catchupCap'>>,
): Promise<PipelineRow | null> {
  const { rows } = await q.query<PipelineRow>(
    `update etl_pipelines set
       enabled = coalesce($2, enabled), cron = coalesce($3, cron), timezone = coalesce($4, timezone),
       config = coalesce($5, config), concurrency = coalesce($6, concurrency), catchup = coalesce($7, catchup),
       catchup_cap = coalesce($8, catchup_cap), updated_at = now()
     where id = $1 returning ${COLS}`,
    [id, patch.enabled ?? null, patch.cron ?? null, patch.timezone ?? null, patch.config ? JSON.stringify(patch.config) : null,
      patch.concurrency ?? null, patch.catchup ?? null, patch.catchupCap ?? null],
  );
  return rows[0] ?? null;
}

export async function getPipelines(q: Q, ids: string[]): Promise<PipelineRow[]> {
  const { rows } = await q.query<PipelineRow>(`select ${COLS} from etl_pipelines where id = any($1::text[])`, [ids]);
  return rows;
}
