// Drives the standard graphql-ws client (createClient) against a Switchboard
// server, for ../../jsclient_test.go. It prints one JSON line per observable
// event on stdout and exits when its scenario is over, or after a hard
// timeout.
//
//   node client.mjs --url ws://127.0.0.1:8080/graphql --scenario NAME
//                   [--token TOKEN] [--want N] [--timeout MS] [--id ID]
//
// Scenarios:
//   resume        subscribe statusPosted(after: "0"); keep the last id seen so
//                 that the library's own resubscription after a reconnect
//                 resumes from it; retry on any failure (also while the
//                 server is down); exit once --want statuses have arrived.
//   going-away    the same subscription with the library's default retry
//                 rule; exit when the subscription ends (error or complete).
//   bad-token     connectionParams with a forged token, 2 retry attempts;
//                 exit when the subscription ends.
//   duplicate-id  generateID returns one constant id (--id, default
//                 same-id) and two subscriptions start; exit when both have
//                 ended.
//   init-timeout  connectionParams waits 4 s on the first attempt (longer
//                 than the server's 3 s) and none on later ones; run the query
//                 { __typename } and exit when it has ended.
//
// Events (one JSON object per line):
//   {"event":"connecting","retrying":bool}
//   {"event":"connected","retrying":bool,"payload":...}
//   {"event":"closed","code":n,"reason":s}
//   {"event":"should_retry","kind":"close"|"error","code":n?,"default":bool,"result":bool}
//   {"event":"retry","attempt":n}            (the library is about to reconnect)
//   {"event":"next","sub":s,"data":...,"errors":...}
//   {"event":"error","sub":s,"code":n?,"reason":s?,"message":s?}
//   {"event":"complete","sub":s}
//   {"event":"done"} / {"event":"timeout"}   (last line; exit status 0 / 2)

import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

function parseArgs(argv) {
  const opts = { timeout: 15000, want: 0, token: process.env.SB_TOKEN ?? '' };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '');
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`missing value for ${argv[i]}`);
    i++;
    switch (key) {
      case 'url': opts.url = value; break;
      case 'token': opts.token = value; break;
      case 'scenario': opts.scenario = value; break;
      case 'want': opts.want = Number(value); break;
      case 'timeout': opts.timeout = Number(value); break;
      case 'id': opts.id = value; break;
      default: throw new Error(`unknown option ${argv[i - 1]}`);
    }
  }
  opts.url ??= process.env.SB_URL;
  opts.scenario ??= process.env.SB_SCENARIO;
  if (!opts.url || !opts.scenario) throw new Error('--url and --scenario are required');
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

// Writes to a pipe are synchronous on Linux, so nothing printed is lost when
// the process exits right after.
function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

let client;
let finished = false;
async function finish(event, status) {
  if (finished) return;
  finished = true;
  emit({ event });
  // Dispose without waiting for ever: the hard timeout covers a hung socket.
  try {
    await Promise.race([client?.dispose(), new Promise((r) => setTimeout(r, 1000))]);
  } catch {
    // already closed
  }
  process.exit(status);
}

const hardTimeout = setTimeout(() => finish('timeout', 2), opts.timeout);
hardTimeout.unref?.();

// The library's default shouldRetry is "the failure is a close event"
// (isLikeCloseEvent); fatal close codes never reach shouldRetry at all.
function isLikeCloseEvent(v) {
  return typeof v === 'object' && v !== null && 'code' in v && 'reason' in v;
}

function describeFailure(err) {
  if (isLikeCloseEvent(err)) return { code: err.code, reason: err.reason };
  if (err instanceof Error) return { message: err.message };
  if (Array.isArray(err)) return { message: err.map((e) => e?.message ?? String(e)).join('; ') };
  // An ErrorEvent of ws: the socket failed before or without a close frame.
  return { message: err?.message ?? err?.error?.message ?? String(err) };
}

const STATUS_QUERY = 'subscription($a: ID){ statusPosted(after: $a){ id text } }';

const base = {
  url: opts.url,
  webSocketImpl: WebSocket,
  retryAttempts: 3,
  // Retries come fast: 100 ms per attempt so far, at most 500 ms.
  retryWait: async (retries) => {
    emit({ event: 'retry', attempt: retries + 1 });
    await new Promise((r) => setTimeout(r, Math.min(100 * (retries + 1), 500)));
  },
  on: {
    connecting: (retrying) => emit({ event: 'connecting', retrying: Boolean(retrying) }),
    connected: (_socket, payload, retrying) => emit({ event: 'connected', retrying: Boolean(retrying), payload }),
    closed: (ev) => emit({ event: 'closed', code: ev?.code, reason: ev?.reason }),
  },
};

function connectionParamsFor(token) {
  return token ? { authorization: `Bearer ${token}` } : {};
}

// shouldRetry that records what the library's default would have decided.
function loggingShouldRetry(decide) {
  return (errOrCloseEvent) => {
    const dflt = isLikeCloseEvent(errOrCloseEvent);
    const result = decide(errOrCloseEvent, dflt);
    emit({
      event: 'should_retry',
      kind: dflt ? 'close' : 'error',
      ...(dflt ? { code: errOrCloseEvent.code } : { message: describeFailure(errOrCloseEvent).message }),
      default: dflt,
      result,
    });
    return result;
  };
}

// subscribe starts one operation labelled sub and resolves when it ends.
function subscribe(payload, sub, onNext) {
  return new Promise((resolve) => {
    client.subscribe(payload, {
      next: (value) => {
        emit({ event: 'next', sub, data: value.data ?? null, ...(value.errors ? { errors: value.errors } : {}) });
        onNext?.(value);
      },
      error: (err) => {
        emit({ event: 'error', sub, ...describeFailure(err) });
        resolve();
      },
      complete: () => {
        emit({ event: 'complete', sub });
        resolve();
      },
    });
  });
}

switch (opts.scenario) {
  case 'resume': {
    client = createClient({
      ...base,
      connectionParams: () => connectionParamsFor(opts.token),
      // Long enough to outlast a restart of the server (bounded: 100 × ≤ 500 ms).
      retryAttempts: 100,
      // While the server is down a connection attempt fails with a socket
      // error, not a close event, which the default rule would give up on.
      shouldRetry: loggingShouldRetry(() => true),
    });
    // The library resubscribes with this same payload object after a
    // reconnect; keeping the last id in its variables makes it resume there.
    const payload = { query: STATUS_QUERY, variables: { a: '0' } };
    let seen = 0;
    subscribe(payload, 'status', (value) => {
      const id = value.data?.statusPosted?.id;
      if (id) payload.variables.a = id;
      seen++;
      if (opts.want > 0 && seen >= opts.want) finish('done', 0);
    }).then(() => finish('done', 0));
    break;
  }
  case 'going-away': {
    client = createClient({
      ...base,
      connectionParams: () => connectionParamsFor(opts.token),
      shouldRetry: loggingShouldRetry((_e, dflt) => dflt),
    });
    subscribe({ query: STATUS_QUERY, variables: { a: '0' } }, 'status').then(() => finish('done', 0));
    break;
  }
  case 'bad-token': {
    client = createClient({
      ...base,
      connectionParams: { authorization: 'Bearer forged' },
      retryAttempts: 2,
      shouldRetry: loggingShouldRetry((_e, dflt) => dflt),
    });
    subscribe({ query: STATUS_QUERY, variables: { a: '0' } }, 'status').then(() => finish('done', 0));
    break;
  }
  case 'duplicate-id': {
    client = createClient({
      ...base,
      connectionParams: () => connectionParamsFor(opts.token),
      generateID: () => opts.id ?? 'same-id',
      shouldRetry: loggingShouldRetry((_e, dflt) => dflt),
    });
    const q = { query: STATUS_QUERY, variables: { a: '0' } };
    Promise.all([subscribe(q, 'first'), subscribe(q, 'second')]).then(() => finish('done', 0));
    break;
  }
  case 'init-timeout': {
    let attempts = 0;
    client = createClient({
      ...base,
      connectionParams: async () => {
        attempts++;
        if (attempts === 1) await new Promise((r) => setTimeout(r, 4000));
        return connectionParamsFor(opts.token);
      },
      shouldRetry: loggingShouldRetry((_e, dflt) => dflt),
    });
    subscribe({ query: '{ __typename }' }, 'query').then(() => finish('done', 0));
    break;
  }
  default:
    emit({ event: 'error', message: `unknown scenario ${opts.scenario}` });
    process.exit(64);
}
