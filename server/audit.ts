import type { Context } from 'hono';
import { recordAudit, type AuditEntry } from '../db/audit';
import type { AppDeps, AppEnv } from './context';

/**
 * Records a state change made through the API, by the request's principal (SPEC §7).
 * Called after the change succeeded. The engine commits the change itself, so the two are
 * not one transaction: if the audit insert fails, the change stands, the request still
 * answers its success, and the failure is logged as an error with what was not recorded.
 */
export type Audit = (c: Context<AppEnv>, entry: Omit<AuditEntry, 'actor'>) => Promise<void>;

export function createAudit(deps: Pick<AppDeps, 'db' | 'log'>): Audit {
  return async (c, entry) => {
    const actor = c.get('principal').actor;
    try {
      await recordAudit(deps.db.pool, [{ ...entry, actor }]);
    } catch (err) {
      deps.log.error({ audit: { ...entry, actor }, err: err instanceof Error ? err.message : String(err) }, 'could not record an audit entry');
    }
  };
}
