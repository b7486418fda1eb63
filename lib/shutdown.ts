import type { Logger } from './logger';

/**
 * SIGTERM/SIGINT handling for an entry point: `stop` runs once, however many signals
 * arrive; the process exits 0 when it resolves, or anyway after `deadlineMs` (a stop
 * that hangs must not keep a container from being replaced).
 */
export function onShutdown(log: Logger, stop: (signal: string) => Promise<void>, deadlineMs: number): void {
  let stopping = false;
  const handle = (signal: string) => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(0), deadlineMs).unref();
    stop(signal).then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err: err instanceof Error ? err.message : String(err) }, 'error while shutting down');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => handle('SIGTERM'));
  process.on('SIGINT', () => handle('SIGINT'));
}
