/**
 * Removes secrets from text before it reaches a log, an API response or Postgres.
 * Credential resolution registers the secret fields of every credential it hands out; the
 * patterns catch secrets that arrive by other routes (URLs with passwords, auth headers,
 * key JSON, PEM blocks).
 *
 * What must stay true:
 * - Linear time. Every pattern starts at a literal (`://`, `bearer`, a key name, `-----BEGIN`)
 *   and its repeats are bounded or stop at a character the start cannot be inside, so a
 *   megabyte stack costs milliseconds, not seconds, in the api's event loop.
 * - Cut after redacting, never before: a cut can split a secret, and the half before the
 *   cut no longer matches anything. `redact(text, { max })` redacts a window that reaches
 *   past the cut by more than any secret or pattern match can be long, then cuts.
 * - Only secret values are registered (`private_key`, `password`, `apiKey`, tokens), never
 *   names or public parts: registering `default` or `service_account` would erase those
 *   words from every message.
 */
const known = new Set<string>();
let longestKnown = 0;

export function registerSecret(value: string | undefined | null): void {
  // Very short values would redact ordinary words; they are not real secrets anyway.
  if (value && value.length >= 6 && !known.has(value)) {
    known.add(value);
    longestKnown = Math.max(longestKnown, value.length);
  }
}

/** Field names whose values are secrets, wherever they appear in a credential. */
const SECRET_FIELD = /^(password|passwd|pass|secret|client_secret|private_key|privateKey|api_?key|apiKey|access_?token|refresh_?token|token|auth_?token|bearer)$/i;

/** Registers the secret fields of a credential object (at any depth), nothing else. */
export function registerSecrets(obj: unknown, depth = 0): void {
  if (!obj || typeof obj !== 'object' || depth > 10) return;
  for (const [k, v] of Object.entries(obj)) {
    if (typeof v === 'string' && SECRET_FIELD.test(k)) registerSecret(v);
    else if (v && typeof v === 'object') registerSecrets(v, depth + 1);
  }
}

/** The longest text one pattern match can cover (see the bounded repeats below). */
const MAX_MATCH = 8_192;

const PATTERNS: [RegExp, string][] = [
  // user:password@ in a URL. Starts at `://`; both runs stop at `/`, which every later
  // `://` contains, so no character is scanned from more than one start.
  [/(:\/\/[^\s:/@]{0,256}:)[^\s@/]{1,1024}@/g, '$1[redacted]@'],
  [/\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,4096}/gi, '$1 [redacted]'],
  [/("?(?:password|apiKey|api_key|private_key|secret|token)"?\s{0,16}[:=]\s{0,16})("(?:[^"\\\n]|\\.){0,4096}"|[^\s,&}]{1,4096})/gi, '$1"[redacted]"'],
  // A PEM block, to its END line or, when cut off, to the end of the text.
  [/-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]{0,40}PRIVATE KEY-----|$)/g, '[redacted private key]'],
];

function redactAll(text: string): string {
  let out = text;
  for (const s of known) if (out.includes(s)) out = out.split(s).join('[redacted]');
  for (const [re, rep] of PATTERNS) out = out.replace(re, rep);
  return out;
}

/**
 * Redacts `text`; with `max`, the result is at most `max` characters (plus `…`). Only a
 * window of `max` plus a margin longer than any secret or match is redacted, so the cost
 * is bounded by `max`, not by the input.
 */
export function redact(text: string, o: { max?: number } = {}): string {
  const max = o.max;
  if (max === undefined) return redactAll(text);
  if (text.length <= max) return redactAll(text);
  const margin = Math.max(longestKnown, MAX_MATCH) + 64;
  const window = redactAll(text.slice(0, max + margin));
  return window.length > max ? `${window.slice(0, max)}…` : window;
}

/** Test hook: forget registered secrets. */
export function clearSecrets(): void {
  known.clear();
  longestKnown = 0;
}
