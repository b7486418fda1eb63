import { afterEach, describe, expect, it } from 'vitest';
import { clearSecrets, redact, registerSecret, registerSecrets } from './redact';

/** Redaction (lib/redact.ts): linear time, cut after redacting, only secret fields registered. */

afterEach(() => clearSecrets());

const stackLine = (i: number) => `    at Object.handler${i} (/app/node_modules/some-lib/dist/index.js:${i}:17)\n`;

describe('redact', () => {
  // Finding: the URL pattern was quadratic (~1 s on 60 KB of letters).
  it('stays linear on the input that was quadratic', () => {
    // Every `a` after a `.` is a word boundary where the old scheme pattern started over.
    const evil = 'a.'.repeat(30_000);
    const t0 = performance.now();
    redact(evil);
    redact(`${'x://'.repeat(15_000)}`);
    redact(`${'password="'.repeat(6_000)}`);
    redact(`${'-----BEGIN PRIVATE KEY-----'.repeat(2_000)}`);
    expect(performance.now() - t0).toBeLessThan(200);
  });

  it('a 1 MB stack with 3 secrets: under 50 ms, every secret gone', () => {
    registerSecret('yespo-api-key-5c3f0e9a7d');
    let stack = 'Error: request failed\n';
    while (stack.length < 1_000_000) stack += stackLine(stack.length);
    const at = (f: number) => Math.floor(stack.length * f);
    const secrets = ['yespo-api-key-5c3f0e9a7d', 'https://etl:pg-pass-77e1@db.internal:5432/etl', '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC\n-----END PRIVATE KEY-----'];
    stack = `${stack.slice(0, at(0.2))}${secrets[0]}${stack.slice(at(0.2), at(0.5))}${secrets[1]}${stack.slice(at(0.5), at(0.9))}${secrets[2]}${stack.slice(at(0.9))}`;
    expect(stack.length).toBeGreaterThan(1_000_000);
    redact(stack); // warm up the regex compiler
    const runs: number[] = [];
    let out = '';
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      out = redact(stack);
      runs.push(performance.now() - t0);
    }
    const median = runs.sort((a, b) => a - b)[2];
    process.stdout.write(`redact: 1 MB stack with 3 secrets, median ${median.toFixed(1)} ms\n`);
    expect(median).toBeLessThan(50);
    for (const s of ['yespo-api-key-5c3f0e9a7d', 'pg-pass-77e1', 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC']) expect(out).not.toContain(s);
    expect(out).toContain('https://etl:[redacted]@db.internal');
    expect(out).toContain('[redacted private key]');
  });

  // Finding: cutting before redacting could leave half a secret.
  it('cuts after redacting: a secret straddling the cut leaves no part of itself', () => {
    const secret = 'straddling-secret-0123456789abcdef';
    registerSecret(secret);
    const text = `${'x'.repeat(990)}${secret}${'y'.repeat(5_000)}`;
    const out = redact(text, { max: 1_000 });
    expect(out.length).toBeLessThanOrEqual(1_001);
    for (let n = 6; n <= secret.length; n++) expect(out, secret.slice(0, n)).not.toContain(secret.slice(0, n));
    const pem = `${'x'.repeat(990)}-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1234567890\n-----END RSA PRIVATE KEY-----`;
    expect(redact(pem, { max: 1_000 })).not.toContain('MIIE');
    const kv = `${'x'.repeat(995)} password="hunter2-secret-value"`;
    expect(redact(kv, { max: 1_010 })).not.toContain('hunter2');
  });

  it('keeps a cut redaction cheap whatever the input size: it reads only a window past the cut', () => {
    // A "string" far too long to scan (5 billion characters): only what redact slices off
    // it exists, so a whole-input scan could not even run.
    const asked: [number, number][] = [];
    const vast = {
      length: 5_000_000_000,
      slice: (from: number, to: number) => { asked.push([from, to]); return 'z'.repeat(to - from); },
    } as unknown as string;
    expect(redact(vast, { max: 4_000 })).toBe(`${'z'.repeat(4_000)}…`);
    expect(asked).toHaveLength(1);
    expect(asked[0][0]).toBe(0);
    expect(asked[0][1]).toBeGreaterThan(4_000);
    expect(asked[0][1]).toBeLessThan(4_000 + 100_000);
  });

  // Finding: every 6+ character string of a credential was registered.
  it('registers only the secret fields of a credential, never names or public parts', () => {
    registerSecrets({
      type: 'service_account', project_id: 'bdi-chat-va', private_key_id: 'abc123def456', private_key: '-----BEGIN PRIVATE KEY-----\nSECRETPEM\n-----END PRIVATE KEY-----\n',
      client_email: 'etl@bdi-chat-va.iam.gserviceaccount.com', client_id: '1234567890',
    });
    registerSecrets({ username: 'default', password: 'ch-password-42' });
    registerSecrets({ apiKey: 'yespo-key-999999', nested: { access_token: 'tok-abcdef-123' } });
    const msg = 'user default of service_account bdi-chat-va (etl@bdi-chat-va.iam.gserviceaccount.com) via yespo/OVAGO';
    expect(redact(msg)).toBe(msg);
    expect(redact('pw ch-password-42 key yespo-key-999999 tok tok-abcdef-123')).toBe('pw [redacted] key [redacted] tok [redacted]');
    expect(redact('key: -----BEGIN PRIVATE KEY-----\nSECRETPEM\n-----END PRIVATE KEY-----\n!')).not.toContain('SECRETPEM');
  });
});
