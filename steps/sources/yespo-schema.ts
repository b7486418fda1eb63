import { z } from 'zod';
import { NonRetryableError } from '../../lib/errors';

/**
 * THE shape of one contact in Yespo's `GET /group/{groupId}/contacts` answer. It is kept in
 * this one file so it can be corrected against the live API in one place. Only what we
 * normalise is checked; every other field passes through untouched (looseObject).
 *
 * Decisions worth revisiting against the live API:
 * - `id` is an integer; a string of digits is accepted and coerced (some JSON encoders
 *   quote 64-bit ids). Anything else (e.g. "abc") makes the contact malformed, because the
 *   id is the key of the Redis hash field.
 * - `channels` is required (a contact without any channel is useless to marketing and
 *   most likely a changed response shape); `fields` is optional.
 * - channel types are not an enum: Yespo has more than email/sms (push, webpush, ...).
 */
const id = z.union([
  z.number().int().nonnegative(),
  z.string().regex(/^\d{1,15}$/).transform(Number),
], { error: 'expected an integer id (a number or a string of digits)' });

const channel = z.looseObject({ type: z.string(), value: z.string() });
const field = z.looseObject({
  id: z.union([z.number().int(), z.string().regex(/^\d+$/).transform(Number)], { error: 'expected an integer field id' }),
  value: z.union([z.string(), z.number(), z.boolean(), z.null()]).optional(),
});

export const yespoContactSchema = z.looseObject({
  id,
  firstName: z.string().nullish(),
  lastName: z.string().nullish(),
  channels: z.array(channel),
  fields: z.array(field).nullish(),
  externalCustomerId: z.string().nullish(),
});

export type YespoContact = z.infer<typeof yespoContactSchema>;

/**
 * What `cache:yespo:<brand>:contacts` stores per contact (hash field = String(id)):
 * - id, firstName, lastName, externalCustomerId: as sent, missing → null;
 * - email / phone: the first `email` / `sms` channel (type compared case-insensitively),
 *   else null; other channel types are not kept;
 * - fields: `{ "<field id>": value }`;
 * - extra: every top-level property the schema above does not name (address,
 *   languageCode, groups, ...), untouched, so nothing the API sends is silently lost.
 */
export interface NormalisedContact {
  id: number;
  firstName: string | null;
  lastName: string | null;
  email: string | null;
  phone: string | null;
  externalCustomerId: string | null;
  fields: Record<string, string | number | boolean | null>;
  extra: Record<string, unknown>;
}

const KNOWN = new Set(Object.keys(yespoContactSchema.shape));

export function normaliseContact(c: YespoContact): NormalisedContact {
  const channel = (type: string) => c.channels.find((ch) => ch.type.toLowerCase() === type)?.value.trim() || null;
  const fields: NormalisedContact['fields'] = {};
  for (const f of c.fields ?? []) fields[String(f.id)] = f.value ?? null;
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(c)) if (!KNOWN.has(k)) extra[k] = v;
  return {
    id: c.id,
    firstName: c.firstName ?? null,
    lastName: c.lastName ?? null,
    email: channel('email'),
    phone: channel('sms'),
    externalCustomerId: c.externalCustomerId ?? null,
    fields,
    extra,
  };
}

export interface ParsedContacts {
  contacts: YespoContact[];
  bad: number;
  /** The first malformed row's description (same text the strict mode throws). */
  firstError?: string;
}

/** One malformed contact: its 1-based row, why (no payload), the zod path, the row itself. */
export interface BadContact {
  row: number;
  reason: string;
  path: string;
  value: unknown;
}

/**
 * Validates a page (or chunk) of raw contacts. `offset` is the 0-based position of rows[0]
 * in the whole group (startindex - 1); errors name the 1-based row (= its startindex).
 * With skipBad a malformed contact is counted, reported to `onBad` and dropped (the
 * bad-rows policy decides whether the step may go on); without it the first one fails the
 * step with a NonRetryableError: the same data would fail every retry. Messages name the
 * row, the id and the zod issue, never the payload (it holds personal data).
 */
export function parseContacts(rows: readonly unknown[], opts: { skipBad: boolean; offset: number; onBad?: (b: BadContact) => void }): ParsedContacts {
  const contacts: YespoContact[] = [];
  let bad = 0;
  let firstError: string | undefined;
  for (let i = 0; i < rows.length; i++) {
    const r = yespoContactSchema.safeParse(rows[i]);
    if (r.success) {
      contacts.push(r.data);
      continue;
    }
    const row = opts.offset + i + 1;
    const message = describeIssue(rows[i], row, r.error);
    if (!opts.skipBad) throw new NonRetryableError(message, { row });
    bad++;
    firstError ??= message;
    opts.onBad?.({ row, reason: message, path: r.error.issues[0].path.map(String).join('.'), value: rows[i] });
  }
  return { contacts, bad, firstError };
}

function describeIssue(row: unknown, rowNumber: number, error: z.ZodError): string {
  const issue = error.issues[0];
  const path = issue.path.length ? issue.path.map(String).join('.') : '(root)';
  const rawId = (row as { id?: unknown } | null)?.id;
  // Only a short scalar id is echoed; anything else could be (part of) the payload.
  const idText = (typeof rawId === 'number' || typeof rawId === 'string') && String(rawId).length <= 32
    ? ` (id ${JSON.stringify(rawId)})` : '';
  const more = error.issues.length > 1 ? ` (+${error.issues.length - 1} more issues)` : '';
  return `malformed Yespo contact at row ${rowNumber}${idText}: ${path}: ${issue.message}${more}`;
}
