// A no-op auth client for @google-cloud/bigquery pointed at an emulator endpoint
// (the sandbox's, or any that takes no credentials). Without an `authClient` the
// library builds a GoogleAuth that looks for Application Default Credentials and
// then probes the GCE metadata server (169.254.169.254), which hangs or fails on
// a machine with no credentials.
//
// What the client actually needs (checked in @google-cloud/common 6 /
// google-auth-library 10): @google-cloud/common wraps whatever `authClient`
// we pass in `new GoogleAuth({ authClient })`, which caches it as its
// credential; every request then calls `authorizeRequest`, which only does
// `await client.getRequestHeaders(url)` and merges the result into the request
// headers. The project id comes from the BigQuery `projectId` option, so the
// auth client's own getProjectId is never consulted when one is given.
//
// We implement that surface structurally instead of importing
// google-auth-library's PassThroughClient, because google-auth-library is only a
// transitive dependency here; the cast is to the option's declared type.
import type { BigQueryOptions } from '@google-cloud/bigquery';

export type BigQueryAuthClient = NonNullable<BigQueryOptions['authClient']>;

export function noopAuthClient(projectId = 'sandbox'): BigQueryAuthClient {
  const client = {
    /** Called once per request; no Authorization header is added. */
    getRequestHeaders(): Promise<Headers> {
      return Promise.resolve(new Headers());
    },
    // The rest is defensive: cheap answers for methods other code paths of
    // GoogleAuth may reach, so nothing falls through to credential discovery.
    getAccessToken(): Promise<{ token: null }> {
      return Promise.resolve({ token: null });
    },
    getProjectId(): Promise<string> {
      return Promise.resolve(projectId);
    },
    getCredentials(): Promise<Record<string, never>> {
      return Promise.resolve({});
    },
  };
  return client as unknown as BigQueryAuthClient;
}
