import { z } from 'zod';
import type { AnyRoute, RouteGroup } from './route';
import { components } from './schemas';

/**
 * The OpenAPI 3.1 document, generated from the same route declarations and zod schemas
 * that validate requests, so every mounted route is listed and the shapes cannot drift.
 */

const REF = '#/components/schemas/';

/** Rewrites zod's local `$defs` references to the shared components. */
function toComponentRefs(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(toComponentRefs);
  if (node && typeof node === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) {
      if (k === '$schema' || k === '$defs' || k === '$id') continue;
      out[k] = k === '$ref' && typeof v === 'string' ? v.replace(/^#\/\$defs\//, REF) : toComponentRefs(v);
    }
    return out;
  }
  return node;
}

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): unknown {
  const named = components.get(schema);
  if (named) return { $ref: REF + named.id };
  return toComponentRefs(z.toJSONSchema(schema, { io, metadata: components, unrepresentable: 'any' }));
}

function parameters(spec: AnyRoute): unknown[] {
  const out: unknown[] = [];
  for (const [where, schema] of [['path', spec.params], ['query', spec.query]] as const) {
    const shape = (schema as z.ZodObject | undefined)?.shape ?? {};
    for (const [name, field] of Object.entries(shape) as [string, z.ZodType][]) {
      const js = jsonSchema(field, 'input') as { description?: string };
      out.push({
        name, in: where, required: where === 'path' || !field.safeParse(undefined).success,
        ...(js.description ? { description: js.description } : {}), schema: js,
      });
    }
  }
  return out;
}

function operation(spec: AnyRoute, path: string): Record<string, unknown> {
  const authed = spec.auth !== false;
  const responses: Record<string, unknown> = {};
  for (const [status, r] of Object.entries(spec.responses)) {
    const content = r.schema
      ? { 'application/json': { schema: jsonSchema(r.schema, 'output') } }
      : r.contentType ? { [r.contentType]: {} } : undefined;
    responses[status] = { description: r.description, ...(content ? { content } : {}) };
  }
  const hasBody = spec.method === 'POST' || spec.method === 'PUT';
  const error = (description: string) => ({ description, content: { 'application/json': { schema: { $ref: `${REF}Error` } } } });
  if (authed) {
    responses['400'] ??= error('invalid query or body');
    responses['401'] = error('not authenticated (unauthorized)');
  }
  if (authed && hasBody) {
    responses['403'] = error(spec.operator
      ? 'the session has no operator role (forbidden), or a cookie-authenticated request failed the origin check (csrf)'
      : 'a cookie-authenticated request failed the origin check (csrf)');
    responses['413'] = error('the body is larger than 64 KB (payload_too_large)');
    responses['415'] = error('the body is not application/json (unsupported_media_type)');
  }
  return {
    operationId: `${spec.method.toLowerCase()}${path.replace(/[{}]/g, '').replace(/[^A-Za-z0-9]+(.)?/g, (_, ch: string | undefined) => (ch ?? '').toUpperCase())}`,
    summary: spec.summary,
    ...(spec.operator ? { description: 'Needs an operator: the API token, or a session with a role in ETL_OPERATOR_ROLES.' } : {}),
    tags: [spec.tag],
    security: authed ? [{ bearerAuth: [] }, { sessionCookie: [] }] : [],
    parameters: parameters(spec),
    ...(hasBody && spec.body ? {
      requestBody: { required: spec.bodyRequired ?? false, content: { 'application/json': { schema: jsonSchema(spec.body, 'input') } } },
    } : {}),
    responses,
  };
}

export function buildOpenApi(groups: readonly RouteGroup[], o: { sessionCookie: string }): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const g of groups) {
    for (const spec of g.routes) {
      const path = (g.base + spec.path).replace(/:([A-Za-z0-9_]+)/g, '{$1}');
      (paths[path] ??= {})[spec.method.toLowerCase()] = operation(spec, path);
    }
  }
  const { schemas } = z.toJSONSchema(components, { uri: (id) => REF + id });
  return {
    openapi: '3.1.0',
    info: {
      title: 'Marketing ETL API',
      version: '1.0.0',
      description: 'Pipelines, runs and steps of the marketing ETL platform. Errors are {"error": {"code", "message", "details"?}}.',
    },
    servers: [{ url: '/' }],
    tags: ['pipelines', 'runs', 'actions', 'events', 'audit', 'meta', 'ops'].map((name) => ({ name })),
    paths,
    components: {
      schemas: toComponentRefs(schemas),
      securitySchemes: {
        bearerAuth: { type: 'http', scheme: 'bearer', description: 'ETL_API_TOKEN' },
        sessionCookie: { type: 'apiKey', in: 'cookie', name: o.sessionCookie, description: 'SP0 session' },
      },
    },
  };
}
