import type { Context, Hono } from 'hono';
import { z } from 'zod';
import { NotFoundError, ValidationError } from '../lib/errors';
import type { AppEnv } from './context';
import { BadRequestError, HttpError } from './errors';

/**
 * A route is declared once, with the zod schemas of its path params, query and body and
 * its responses; `mount` registers it and validates its input, and openapi.ts documents
 * the same declarations. Handlers only ever see validated input.
 */

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';
type Empty = z.ZodObject<Record<string, never>>;

export interface ResponseSpec {
  description: string;
  schema?: z.ZodType;
  /** Non-JSON responses (SSE, Prometheus text). */
  contentType?: string;
}

export interface RouteSpec<P extends z.ZodType = Empty, Q extends z.ZodType = Empty, B extends z.ZodType = Empty> {
  method: Method;
  /** Hono path, relative to where the group is mounted. */
  path: string;
  summary: string;
  tag: string;
  /** false for the public probes; everything under /api/etl is authenticated. */
  auth?: boolean;
  /** A state change: needs the token or a session with an operator role (403 forbidden). */
  operator?: boolean;
  params?: P;
  query?: Q;
  body?: B;
  /** A missing or empty body counts as `{}` unless this is set. */
  bodyRequired?: boolean;
  responses: Record<number, ResponseSpec>;
  handler(c: Context<AppEnv>, input: { params: z.output<P>; query: z.output<Q>; body: z.output<B> }): Response | Promise<Response>;
}

// The group type only needs what mount and openapi read. `handler` is a method, so its
// parameter is checked bivariantly and a spec with concrete schemas is assignable here.
export type AnyRoute = RouteSpec<z.ZodType, z.ZodType, z.ZodType>;

export const route = <P extends z.ZodType = Empty, Q extends z.ZodType = Empty, B extends z.ZodType = Empty>(
  spec: RouteSpec<P, Q, B>,
): RouteSpec<P, Q, B> => spec;

export interface RouteGroup {
  /** Where the group is mounted, '' for the root. */
  base: string;
  routes: readonly AnyRoute[];
}

const EMPTY = z.strictObject({});
const hasBody = (m: Method) => m === 'POST' || m === 'PUT';

export function mount(app: Hono<AppEnv>, group: RouteGroup): void {
  for (const spec of group.routes) {
    app.on(spec.method, group.base + spec.path, async (c) => {
      // Before any input is read: a viewer learns nothing from trying a mutation.
      if (spec.operator && !c.get('principal')?.operator) {
        throw new HttpError(403, 'forbidden', 'this action needs an operator role');
      }
      const params = (spec.params ?? EMPTY).safeParse(c.req.param());
      // A malformed id cannot name anything: not found, without echoing it.
      if (!params.success) throw new NotFoundError('resource');
      const query = parseOrThrow(spec.query ?? EMPTY, queryObject(c.req.url), 'query');
      const body = hasBody(spec.method) ? parseOrThrow(spec.body ?? EMPTY, await readJson(c, spec.bodyRequired ?? false), 'body') : {};
      return spec.handler(c, { params: params.data, query, body });
    });
  }
}

function parseOrThrow<T extends z.ZodType>(schema: T, value: unknown, where: 'query' | 'body'): z.output<T> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  throw new ValidationError(`invalid ${where}`, r.error.issues.slice(0, 20).map((i) => ({
    path: i.path.map((p) => String(p).slice(0, 64)).join('.'),
    message: i.message.slice(0, 200),
  })));
}

/** Query string as a plain object; a repeated key is an error rather than a silent pick. */
function queryObject(url: string): Record<string, string> {
  const entries = [...new URL(url).searchParams];
  const seen = new Set<string>();
  for (const [k] of entries) {
    if (seen.has(k)) throw new ValidationError('invalid query', [{ path: k.slice(0, 64), message: 'repeated parameter' }]);
    seen.add(k);
  }
  // fromEntries defines own properties, so `?__proto__=` is an unknown key, not a prototype.
  return Object.fromEntries(entries);
}

async function readJson(c: Context, required: boolean): Promise<unknown> {
  const text = await c.req.text();
  if (text.trim() === '') {
    if (required) throw new BadRequestError('invalid_body', 'a JSON body is required');
    return {};
  }
  // Requiring the JSON media type also keeps cross-site "simple" form posts out.
  const type = c.req.header('content-type') ?? '';
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    throw new HttpError(415, 'unsupported_media_type', 'the body must be application/json');
  }
  let protoKey = false;
  let value: unknown;
  try {
    value = JSON.parse(text, (k, v: unknown) => {
      if (k === '__proto__') protoKey = true;
      return v;
    });
  } catch {
    throw new BadRequestError('invalid_json', 'the body is not valid JSON');
  }
  // zod copies objects key by key, where `__proto__` would set a prototype, not a field.
  if (protoKey) throw new BadRequestError('invalid_body', 'the key __proto__ is not allowed');
  return value;
}
