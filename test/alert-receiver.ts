import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

/**
 * A real local webhook receiver for the alert tests. `mode` decides each answer: `ok`
 * (200), `fail` (503), `hold` (keeps the request open until released or the client dies);
 * `down()` closes the port, `up()` opens it again on the same port.
 */
export interface Receipt {
  at: number;
  eventId: string | undefined;
  signature: string | undefined;
  body: string;
  json: Record<string, unknown>;
  status: number | null;
}

export class AlertReceiver {
  mode: 'ok' | 'fail' | 'hold' = 'ok';
  readonly receipts: Receipt[] = [];
  private server?: Server;
  private held: ServerResponse[] = [];
  port = 0;

  get url() {
    return `http://127.0.0.1:${this.port}/hook`;
  }

  async up(): Promise<void> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as { port: number }).port;
  }

  async down(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.server = undefined;
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }

  /** Acknowledged (2xx) receipts: what the receiver would act on. */
  acked(): Receipt[] {
    return this.receipts.filter((r) => r.status !== null && r.status >= 200 && r.status < 300);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      const r: Receipt = {
        at: Date.now(), eventId: req.headers['x-etl-event-id'] as string | undefined,
        signature: req.headers['x-etl-signature'] as string | undefined, body, json: JSON.parse(body), status: null,
      };
      this.receipts.push(r);
      if (this.mode === 'hold') {
        this.held.push(res);
        return;
      }
      r.status = this.mode === 'ok' ? 200 : 503;
      res.writeHead(r.status, { 'content-type': 'text/plain' }).end(this.mode);
    });
  }
}
