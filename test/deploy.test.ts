import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../config';

/** There is no Docker engine here: check the deployment files so they cannot silently rot. */

/** The parts of a compose service these checks read. */
interface Service {
  cpus: number; mem_limit: string; command: string[]; stop_grace_period?: string; restart?: string;
  environment: Record<string, string>; env_file: (string | { path: string; required: boolean })[]; deploy?: { replicas?: number };
  healthcheck: { test: string[] }; depends_on: Record<string, { condition: string }>;
}
const compose = parse(readFileSync('docker-compose.yml', 'utf8'), { merge: true }) as { services: Record<string, Service> };
const s = compose.services;

describe('docker-compose.yml', () => {
  it('has every service of the contract', () => {
    expect(Object.keys(s).sort()).toEqual(['api', 'marketing-worker', 'migrate', 'postgres', 'redis', 'web']);
  });

  it('gives marketing-worker 1 CPU and 512 MB with a heap that fits, one replica, a heartbeat healthcheck', () => {
    const w = s['marketing-worker'];
    expect(w.cpus).toBe(1);
    expect(w.mem_limit).toBe('512m');
    const heap = Number(/--max-old-space-size=(\d+)/.exec(w.environment.NODE_OPTIONS)?.[1]);
    expect(heap).toBeGreaterThan(128);
    expect(heap).toBeLessThanOrEqual(384);
    expect(w.command).toEqual(['node', 'dist/worker.mjs']);
    expect(w.stop_grace_period).toBeDefined();
    expect(w.deploy?.replicas ?? 1).toBe(1);
    // Not `process.kill(1, 0)`: the check reads the heartbeat the worker writes only while healthy.
    expect(w.healthcheck.test).toEqual(['CMD', 'node', 'dist/healthcheck.mjs']);
    expect(w.environment.WORKER_HEARTBEAT_FILE).toMatch(/^\/tmp\//);
  });

  it('runs the worker with the V8 flags of `npm run worker` (what bench/worker-memory.ts measures)', () => {
    const script = (JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: { worker: string } }).scripts.worker;
    const flags = script.split(/\s+/).filter((a) => a.startsWith('--'));
    expect(flags).toContain('--max-semi-space-size=2');
    expect(s['marketing-worker'].environment.NODE_OPTIONS.split(/\s+/)).toEqual(flags);
  });

  it('orders start-up with healthchecks and a one-shot migrate', () => {
    for (const name of ['postgres', 'redis', 'api', 'web', 'marketing-worker']) expect(s[name].healthcheck?.test, name).toBeDefined();
    expect(s.migrate.restart).toBe('no');
    expect(s.migrate.depends_on.postgres.condition).toBe('service_healthy');
    for (const name of ['api', 'marketing-worker']) {
      expect(s[name].depends_on.migrate.condition).toBe('service_completed_successfully');
      expect(s[name].depends_on.redis.condition).toBe('service_healthy');
    }
    expect(s.web.depends_on.api.condition).toBe('service_healthy');
  });

  it('holds no secret: credentials come from the env file', () => {
    const text = readFileSync('docker-compose.yml', 'utf8');
    expect(text).not.toMatch(/ETL_API_TOKEN\s*[:=]|private_key|apiKey|ETL_CRED_/);
    for (const name of ['api', 'migrate']) expect(s[name].env_file).toEqual(['.env']);
    expect(readFileSync('.gitignore', 'utf8')).toMatch(/^\.env$/m);
  });

  // Finding: the api container received every ETL_CRED_*.
  it('gives source credentials to the worker only, from a file the api never reads', () => {
    // .env.credentials is optional: a host using the credential service has none, and
    // `docker compose up` must not stop on a missing file.
    expect(s['marketing-worker'].env_file).toEqual([{ path: '.env', required: true }, { path: '.env.credentials', required: false }]);
    for (const name of ['api', 'migrate', 'web']) expect(JSON.stringify(s[name]), name).not.toMatch(/credentials|ETL_CRED_/);
    expect(readFileSync('.env.example', 'utf8')).not.toMatch(/^\s*#?\s*ETL_CRED_/m);
    expect(readFileSync('.env.credentials.example', 'utf8')).toMatch(/ETL_CRED_YESPO_OVAGO/);
    expect(readFileSync('.gitignore', 'utf8')).toMatch(/^\.env\.credentials$/m);
  });

  // Finding: the token in .env.example passed validation.
  it('refuses the placeholder values of .env.example at start', () => {
    const env = Object.fromEntries(readFileSync('.env.example', 'utf8').split('\n')
      .filter((l) => /^[A-Z_]+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    expect(env.ETL_API_TOKEN).toBeDefined();
    expect(() => loadConfig(env)).toThrow(/ETL_API_TOKEN: .*placeholder/);
    for (const v of ['change-me-to-sp0s-cookie-secret', 'xxxxxxxxxxxxxxxxxxxxxxxx', 'your-secret-goes-here-0000']) {
      expect(() => loadConfig({ SESSION_SECRET: v }), v).toThrow(/SESSION_SECRET: .*placeholder/);
      expect(() => loadConfig({ METRICS_TOKEN: v }), v).toThrow(/METRICS_TOKEN/);
    }
    expect(loadConfig({ ETL_API_TOKEN: 'f3a9c1d27be84e6a9d0c5b1e7f2a4c68', ETL_OPERATOR_ROLES: 'admin, etl-operator' }).ETL_OPERATOR_ROLES)
      .toEqual(['admin', 'etl-operator']);
  });
});

// Finding: no .dockerignore, so `COPY . .` took .env, .git and the host's node_modules.
describe('.dockerignore', () => {
  it('keeps secrets, history and host builds out of the build context', () => {
    const lines = readFileSync('.dockerignore', 'utf8').split('\n').map((l) => l.trim());
    for (const x of ['.env', '.env.*', '.git', 'node_modules', 'dist']) expect(lines, x).toContain(x);
    expect(lines).toContain('!.env.example');
  });
});

describe('Dockerfile', () => {
  const text = readFileSync('Dockerfile', 'utf8');
  it('is multi-stage on a Node LTS image, runs as non-root with production deps only', () => {
    expect(text.match(/^FROM /gm)!.length).toBeGreaterThanOrEqual(3);
    expect(text).toMatch(/FROM node:(22|24|26)[-.\w]* AS runtime/);
    expect(text).toMatch(/npm ci --omit=dev/);
    expect(text).toMatch(/^USER node$/m);
    expect(text).toMatch(/AS web/);
  });
});

describe('nginx config', () => {
  const conf = readFileSync('deploy/nginx.conf', 'utf8');
  it('passes nginx -t (Debian nginx)', () => {
    const nginx = ['/usr/sbin/nginx', '/usr/bin/nginx'].find(existsSync);
    expect(nginx, 'nginx is installed by .ci/run').toBeDefined();
    const dir = mkdtempSync(path.join(tmpdir(), 'etl-nginx-'));
    mkdirSync(path.join(dir, 'logs'));
    // `api` resolves only inside compose; everything else is checked as shipped.
    writeFileSync(path.join(dir, 'site.conf'), conf.replace('server api:3000;', 'server 127.0.0.1:3000;'));
    writeFileSync(path.join(dir, 'nginx.conf'),
      `pid ${dir}/nginx.pid;\nerror_log ${dir}/logs/error.log;\nevents {}\nhttp {\n  access_log off;\n  include ${dir}/site.conf;\n}\n`);
    const out = execFileSync(nginx!, ['-t', '-p', dir, '-c', path.join(dir, 'nginx.conf')], { encoding: 'utf8', stdio: 'pipe' });
    expect(out).toBeDefined();
  });

  it('streams SSE unbuffered, keeps the public Host for the CSRF check, and hides /metrics', () => {
    const sse = /location = \/api\/etl\/events \{([\s\S]*?)\n {4}\}/.exec(conf)?.[1] ?? '';
    expect(sse).toMatch(/proxy_buffering off;/);
    expect(sse).toMatch(/proxy_http_version 1\.1;/);
    // Finding: `Host $host` dropped the port and a client's X-Forwarded-Host went through.
    for (const loc of [sse, /location \/api\/etl\/ \{([\s\S]*?)\n {4}\}/.exec(conf)?.[1] ?? '']) {
      expect(loc).toMatch(/proxy_set_header X-Forwarded-Host \$http_host;/);
      expect(loc).toMatch(/proxy_set_header X-Forwarded-For \$remote_addr;/);
      expect(loc).toMatch(/proxy_set_header Forwarded "";/);
    }
    expect(conf).not.toMatch(/proxy_add_x_forwarded_for|Host \$host;/);
    expect(conf).not.toMatch(/location[^{]*metrics/);
    expect(conf).toMatch(/location \/ \{ return 404; \}/);
  });
});

describe('production build', () => {
  it('bundles api, worker and migrate, with migrations and the page', () => {
    execFileSync(process.execPath, ['--import', 'tsx', 'scripts/build.ts'], { stdio: 'pipe' });
    for (const f of ['api.mjs', 'worker.mjs', 'migrate.mjs', 'healthcheck.mjs', 'listener.mjs', 'web/index.html', 'web/app.js', 'migrations/meta/_journal.json']) {
      expect(existsSync(path.join('dist', f)), f).toBe(true);
    }
    // What a host api (SP0's Fastify) imports: loading it opens nothing.
    const exported = execFileSync(process.execPath, ['-e', "import('./dist/listener.mjs').then((m) => console.log(Object.keys(m).sort().join(',')))"], { encoding: 'utf8' });
    expect(exported.trim()).toBe('createEtlApi,createLogger,etlFastifyPlugin,loadConfig');
    // Finding: the production page shipped its source map.
    expect(existsSync(path.join('dist', 'web', 'app.js.map'))).toBe(false);
    expect(readFileSync(path.join('dist', 'web', 'app.js'), 'utf8')).not.toContain('sourceMappingURL');
  }, 60_000);
});
