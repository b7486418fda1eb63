import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/** The SP0 integration kit (deploy/sp0/): the nginx snippet and the Caddy route, as SP0 would load them. */

describe('deploy/sp0/nginx-etl.conf', () => {
  const snippet = readFileSync('deploy/sp0/nginx-etl.conf', 'utf8');

  it('passes nginx -t inside a server block like SP0 web’s (:80)', () => {
    const nginx = ['/usr/sbin/nginx', '/usr/bin/nginx'].find(existsSync);
    expect(nginx, 'nginx is installed by .ci/run').toBeDefined();
    const dir = mkdtempSync(path.join(tmpdir(), 'etl-sp0-nginx-'));
    mkdirSync(path.join(dir, 'logs'));
    // `api` resolves only on SP0's network; everything else is checked as shipped.
    writeFileSync(path.join(dir, 'etl.conf'), snippet.replaceAll('http://api:3000', 'http://127.0.0.1:3000'));
    writeFileSync(path.join(dir, 'nginx.conf'), `pid ${dir}/nginx.pid;\nerror_log ${dir}/logs/error.log;\nevents {}\nhttp {\n  access_log off;\n`
      + `  server {\n    listen 80;\n    root /usr/share/nginx/html;\n    location / { try_files $uri /index.html; }  # SP0's own app\n    include ${dir}/etl.conf;\n  }\n}\n`);
    execFileSync(nginx!, ['-t', '-p', dir, '-c', path.join(dir, 'nginx.conf')], { stdio: 'pipe' });
  });

  it('serves the page under /etl, proxies /api/etl/ with SSE unbuffered, and exposes no probe or metrics', () => {
    expect(snippet).toMatch(/location \^~ \/etl\/ \{[\s\S]*?try_files \$uri \/etl\/index\.html;/);
    const sse = /location = \/api\/etl\/events \{([\s\S]*?)\n\}/.exec(snippet)?.[1] ?? '';
    expect(sse).toMatch(/proxy_buffering off;/);
    expect(sse).toMatch(/proxy_http_version 1\.1;/);
    expect(sse).toMatch(/proxy_read_timeout 1h;/);
    expect(snippet).toMatch(/location \^~ \/api\/etl\/ \{[\s\S]*?proxy_set_header Host \$http_host;/);
    // The hardening of deploy/nginx.conf: no client forwarding header passed on, page headers, no source maps.
    expect(snippet).not.toMatch(/\$proxy_add_x_forwarded_for|Host \$host;/);
    expect(snippet).toMatch(/proxy_set_header Forwarded "";/);
    expect(snippet).toMatch(/add_header Content-Security-Policy "default-src 'self';/);
    expect(snippet).toMatch(/location ~\* \\\.map\$ \{ return 404; \}/);
    expect(snippet).not.toMatch(/location[^{]*(metrics|healthz|readyz)/);
    // A snippet: no server or upstream block of its own (SP0's config owns those).
    expect(snippet).not.toMatch(/^\s*(server|upstream|http)\s*\{/m);
  });
});

describe('deploy/sp0/Caddyfile.etl', () => {
  it('adapts and validates inside a site block (Caddy from Debian)', () => {
    const caddy = ['/usr/bin/caddy', '/usr/local/bin/caddy'].find(existsSync);
    expect(caddy, 'caddy is installed by .ci/run').toBeDefined();
    const dir = mkdtempSync(path.join(tmpdir(), 'etl-sp0-caddy-'));
    copyFileSync('deploy/sp0/Caddyfile.etl', path.join(dir, 'etl.caddy'));
    writeFileSync(path.join(dir, 'Caddyfile'), `http://marketing.example.dev {\n\timport ${dir}/etl.caddy\n\thandle {\n\t\treverse_proxy web:80\n\t}\n}\n`);
    const json = JSON.parse(execFileSync(caddy!, ['adapt', '--config', path.join(dir, 'Caddyfile'), '--adapter', 'caddyfile', '--validate'], { encoding: 'utf8', stdio: 'pipe' }));
    const text = JSON.stringify(json);
    expect(text).toContain('"path":["/api/etl/*"]');
    expect(text).toMatch(/"flush_interval":-1,"handler":"reverse_proxy","upstreams":\[\{"dial":"api:3000"\}\]/);
    expect(text).toContain('"path":["/etl*"]');
  });
});
