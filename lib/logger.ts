import { pino, type Logger } from 'pino';

export type { Logger };

/** Keys whose values are never logged, wherever they appear in a log object. */
const REDACT = [
  'password', 'apiKey', 'token', 'authorization', 'private_key', 'secret',
  '*.password', '*.apiKey', '*.token', '*.authorization', '*.private_key', '*.secret',
  'headers.authorization', 'headers.cookie', 'req.headers.authorization', 'req.headers.cookie',
];

export function createLogger(opts: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino(
    { level: opts.level ?? 'info', name: opts.name, redact: { paths: REDACT, censor: '[redacted]' } },
    opts.destination as pino.DestinationStream | undefined,
  );
}
