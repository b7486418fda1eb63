// What the signed-in caller may do (GET /api/etl/me). A viewer (a session without an
// operator role) sees every action disabled, with the reason on hover and in a banner;
// the API refuses them anyway (403), this only keeps the page honest.
import type { Actor } from './types';

let operator = true;
let roles: string[] = ['admin'];
let actor: Actor | null = null;

export function setAccess(me: { actor: Actor; operator: boolean; operatorRoles: string[] }): void {
  operator = me.operator;
  roles = me.operatorRoles;
  actor = me.actor;
}

export const canOperate = (): boolean => operator;
export const currentActor = (): Actor | null => actor;

export function readOnlyReason(): string {
  return `Read-only: your session has no operator role (needs ${roles.length === 1 ? 'the role' : 'one of the roles'} ${roles.join(', ')}).`;
}

/** Disables an action control when the caller cannot use it, saying why. */
export function guard<T extends HTMLButtonElement | HTMLInputElement>(el: T): T {
  if (!operator) {
    el.disabled = true;
    el.title = readOnlyReason();
    el.setAttribute('aria-disabled', 'true');
    el.dataset['readonly'] = 'true';
  }
  return el;
}

export function actorLabel(a: Actor | null | undefined): string {
  if (!a) return '—';
  if (a.kind === 'schedule') return 'schedule';
  if (a.kind === 'token') return 'API token';
  if (a.kind === 'system') return 'system';
  return a.name ?? a.id ?? 'a session user';
}
