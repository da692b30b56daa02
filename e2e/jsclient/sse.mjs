// Drives the standard graphql-sse client (createClient, "distinct
// connections" mode) against a Switchboard server, for ../sse_client_test.go.
// It prints one JSON line per observable event on stdout, in the format of
// client.mjs, and exits when its scenario is over, or after a hard timeout.
//
//   node sse.mjs --url http://127.0.0.1:8080/graphql --scenario resume
//                [--token TOKEN] [--want N] [--timeout MS]
//
// Scenario:
//   resume   subscribe statusPosted(after: "0") with the token in the
//            Authorization header; keep the last id seen in the variables, so
//            that the library's own reconnection (it sends the same request
//            again) resumes from it; retry for ever, 100 ms apart; exit once
//            --want statuses have arrived.
//
// Events (one JSON object per line):
//   {"event":"connecting","retrying":bool}
//   {"event":"connected","retrying":bool}
//   {"event":"retry","attempt":n}
//   {"event":"next","sub":"status","data":...,"errors":...}
//   {"event":"error","sub":"status","message":s}
//   {"event":"complete","sub":"status"}
//   {"event":"done"} / {"event":"timeout"}   (last line; exit status 0 / 2)

import { createClient } from 'graphql-sse';

const opts = { timeout: 15000, want: 0, token: '' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const key = argv[i].replace(/^--/, '');
  const value = argv[i + 1];
  if (value === undefined) throw new Error(`missing value for ${argv[i]}`);
  if (!['url', 'token', 'scenario', 'want', 'timeout'].includes(key)) throw new Error(`unknown option ${argv[i]}`);
  opts[key] = ['want', 'timeout'].includes(key) ? Number(value) : value;
}
if (!opts.url || opts.scenario !== 'resume') throw new Error('--url and --scenario resume are required');

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

let finished = false;
function finish(event, status) {
  if (finished) return;
  finished = true;
  emit({ event });
  client.dispose();
  process.exit(status);
}
setTimeout(() => finish('timeout', 2), opts.timeout).unref?.();

const client = createClient({
  url: opts.url,
  headers: opts.token ? { Authorization: `Bearer ${opts.token}` } : {},
  retryAttempts: Infinity,
  retry: async (retries) => {
    emit({ event: 'retry', attempt: retries + 1 });
    await new Promise((r) => setTimeout(r, 100));
  },
  on: {
    connecting: (retrying) => emit({ event: 'connecting', retrying: Boolean(retrying) }),
    connected: (retrying) => emit({ event: 'connected', retrying: Boolean(retrying) }),
  },
});

const variables = { a: '0' };
let received = 0;
client.subscribe(
  { query: 'subscription($a: ID){ statusPosted(after: $a){ id text } }', variables },
  {
    next: (result) => {
      emit({ event: 'next', sub: 'status', data: result.data, errors: result.errors });
      const id = result.data?.statusPosted?.id;
      if (id) {
        variables.a = id;
        received++;
      }
      if (opts.want && received >= opts.want) finish('done', 0);
    },
    error: (err) => emit({ event: 'error', sub: 'status', message: err?.message ?? String(err) }),
    complete: () => emit({ event: 'complete', sub: 'status' }),
  },
);
