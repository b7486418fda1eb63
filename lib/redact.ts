/**
 * Removes secrets from text before it reaches a log, an API response or Postgres.
 * Credential resolution registers every secret value it hands out; the patterns catch
 * secrets that arrive by other routes (URLs with passwords, auth headers, key JSON).
 */
const known = new Set<string>();

export function registerSecret(value: string | undefined | null): void {
  // Very short values would redact ordinary words; they are not real secrets anyway.
  if (value && value.length >= 6) known.add(value);
}

/** Registers every string leaf of a credential object. */
export function registerSecrets(obj: unknown): void {
  if (typeof obj === 'string') registerSecret(obj);
  else if (obj && typeof obj === 'object') for (const v of Object.values(obj)) registerSecrets(v);
}

const PATTERNS: [RegExp, string][] = [
  [/(\b[a-z][a-z0-9+.-]*:\/\/[^\s:/@]*:)[^\s@/]+@/gi, '$1[redacted]@'],
  [/\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}/gi, '$1 [redacted]'],
  [/("?(?:password|apiKey|api_key|private_key|secret|token)"?\s*[:=]\s*)("(?:[^"\\]|\\.)*"|[^\s,&}]+)/gi, '$1"[redacted]"'],
  [/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)/g, '[redacted private key]'],
];

export function redact(text: string): string {
  let out = text;
  for (const s of known) if (out.includes(s)) out = out.split(s).join('[redacted]');
  for (const [re, rep] of PATTERNS) out = out.replace(re, rep);
  return out;
}

/** Test hook: forget registered secrets. */
export function clearSecrets(): void {
  known.clear();
}
