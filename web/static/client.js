// A small GraphQL client for Switchboard's browser UI.
//
// Queries and mutations go over HTTP POST to /graphql; writes that create
// something go through write(), which sends them with an Idempotency-Key
// and retries them safely. Subscriptions go over
// one WebSocket speaking the graphql-transport-ws protocol, which reconnects
// by itself (jittered exponential backoff) and resubscribes every active
// subscription once the server has acknowledged the new connection. Each
// subscription's variables are produced by a function at (re)subscribe time,
// so a stream can resume where it left off (`after: <last id seen>`).
//
// Usage:
//
//   const client = createClient({
//     getToken: () => session?.token ?? null,
//     onTokenRejected: () => forgetSession(),
//     onStateChange: ({ state, retryAt }) => render(state, retryAt),
//   });
//   const data = await client.query('query { me { id } }');
//   const posted = await client.write('mutation ($t: String!) { postStatus(text: $t) { id } }', { t });
//   const stop = client.subscribe('subscription ($after: ID) { ... }', {
//     variables: () => ({ after: lastId }),
//     next: (data) => ..., error: (err) => ..., complete: () => ...,
//   });
//   client.restart(); // after sign-in or sign-out: reconnect with the new token

const SUBPROTOCOL = 'graphql-transport-ws';

// Close codes after which the standard graphql-ws client gives up. This one
// keeps trying (a page should come back on its own), but only at the slowest
// pace, and says so in the console: they point at a client or server bug.
const FATAL_CLOSE_CODES = new Set([4400, 4401, 4406, 4409, 4429, 4500]);

// The server refused the token given in connection_init.
const CLOSE_FORBIDDEN = 4403;

// Close codes this client uses itself (4000–4999 are free for applications).
const CLOSE_ACK_TIMEOUT = 4504;
const CLOSE_KEEPALIVE_TIMEOUT = 4499;
const CLOSE_BAD_MESSAGE = 4400;

/** An error reported by the GraphQL server or by the transport. */
export class GraphQLError extends Error {
  /**
   * @param {string} message human-readable message, as the server wrote it
   * @param {object} [details]
   * @param {string|null} [details.code] errors[0].extensions.code, if any
   * @param {Array|null} [details.errors] the full GraphQL errors array
   * @param {number|null} [details.status] the HTTP status, for HTTP requests
   */
  constructor(message, { code = null, errors = null, status = null } = {}) {
    super(message);
    this.name = 'GraphQLError';
    this.code = code;
    this.errors = errors;
    this.status = status;
  }
}

/** Turns a GraphQL errors array into a GraphQLError (first error wins). */
export function errorFromList(errors, status = null) {
  const list = Array.isArray(errors) ? errors : [];
  const first = list[0] || {};
  const message =
    typeof first.message === 'string' && first.message !== ''
      ? first.message
      : 'The server reported an error.';
  const code =
    first.extensions && typeof first.extensions.code === 'string'
      ? first.extensions.code
      : null;
  return new GraphQLError(message, { code, errors: list, status });
}

/**
 * A fresh idempotency key: 128 random bits as 32 hex digits. (Not
 * crypto.randomUUID, which pages served over plain HTTP from another host
 * than localhost do not have.)
 */
export function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Whether a failed write may be sent again: its outcome is unknown, or the
 * server is briefly unavailable.
 */
function retryable(err) {
  return (
    err instanceof GraphQLError &&
    (err.code === 'NETWORK_ERROR' ||
      err.code === 'TIMEOUT' ||
      err.code === 'UNAVAILABLE' ||
      [502, 503, 504].includes(err.status))
  );
}

/** The WebSocket URL of /graphql on the page's own origin. */
export function defaultWebSocketURL() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return scheme + '//' + location.host + '/graphql';
}

/**
 * Creates a client. The WebSocket connects right away and stays connected
 * (reconnecting as needed) until dispose() is called.
 *
 * @param {object} [options]
 * @param {string} [options.httpURL='/graphql'] where queries and mutations go
 * @param {string} [options.wsURL] WebSocket URL, same origin by default
 * @param {() => (string|null|undefined)} [options.getToken] current bearer token
 * @param {(token: string) => void} [options.onTokenRejected] the server closed
 *   the socket with 4403 (token refused); the app should forget the token. The
 *   client reconnects without it in any case.
 * @param {(info: {state: string, retryAt: number|null, code?: number}) => void}
 *   [options.onStateChange] connection state: 'connecting' (first connection
 *   or after restart()), 'connected' (acknowledged), or 'reconnecting' (lost;
 *   retryAt is the Date.now() time of the next attempt, or null while an
 *   attempt is under way)
 * @param {number} [options.initialDelay=500] first reconnect delay, in ms
 * @param {number} [options.maxDelay=10000] reconnect delay cap, in ms
 * @param {number} [options.ackTimeout=10000] how long to wait for connection_ack
 * @param {number} [options.keepAlive=20000] send a ping after this long without
 *   traffic and drop the connection if nothing comes back within ackTimeout;
 *   0 disables it
 * @param {number} [options.writeTimeout=10000] how long write() waits for an
 *   answer before it sends the write again, in ms
 * @param {number} [options.writeAttempts=3] how many times write() sends one
 *   write at most
 */
export function createClient(options = {}) {
  const {
    httpURL = '/graphql',
    wsURL = defaultWebSocketURL(),
    getToken = () => null,
    onTokenRejected = () => {},
    onStateChange = () => {},
    initialDelay = 500,
    maxDelay = 10000,
    ackTimeout = 10000,
    keepAlive = 20000,
    writeTimeout = 10000,
    writeAttempts = 3,
  } = options;

  // ---- HTTP ----------------------------------------------------------------

  /**
   * Runs a query or mutation over HTTP. Resolves to `data`; rejects with a
   * GraphQLError carrying the server's message and `code`
   * (errors[0].extensions.code), or with the network error. `token`
   * overrides the current token for this request (to check one before
   * using it); `idempotencyKey` is sent as the Idempotency-Key header;
   * after `timeout` ms without an answer (0: none) it rejects with the
   * code TIMEOUT.
   */
  async function query(
    queryText,
    variables = {},
    { signal, token = getToken(), idempotencyKey = null, timeout = 0 } = {},
  ) {
    const headers = {
      'Content-Type': 'application/json',
      Accept: 'application/graphql-response+json, application/json',
    };
    if (token) headers.Authorization = 'Bearer ' + token;
    if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;

    // One controller ends the request, on the caller's signal or the timeout.
    const abort = new AbortController();
    let timedOut = false;
    const timeoutId =
      timeout > 0
        ? setTimeout(() => {
            timedOut = true;
            abort.abort();
          }, timeout)
        : null;
    const forward = () => abort.abort();
    if (signal) {
      if (signal.aborted) abort.abort();
      signal.addEventListener('abort', forward, { once: true });
    }
    let response;
    let body = null;
    try {
      response = await fetch(httpURL, {
        method: 'POST',
        headers,
        body: JSON.stringify({ query: queryText, variables }),
        credentials: 'same-origin',
        signal: abort.signal,
      });
      try {
        body = await response.json();
      } catch (err) {
        if (abort.signal.aborted) throw err;
        body = null;
      }
    } catch (err) {
      if (!timedOut && abort.signal.aborted) throw err; // the caller's abort
      const error = timedOut
        ? new GraphQLError('The server did not answer in time.', { code: 'TIMEOUT' })
        : new GraphQLError('Could not reach the server.', { code: 'NETWORK_ERROR' });
      error.cause = err;
      throw error;
    } finally {
      clearTimeout(timeoutId);
      if (signal) signal.removeEventListener('abort', forward);
    }
    if (body && Array.isArray(body.errors) && body.errors.length > 0) {
      throw errorFromList(body.errors, response.status);
    }
    if (!response.ok || !body || typeof body !== 'object' || !('data' in body)) {
      throw new GraphQLError(
        `The server answered ${response.status} ${response.statusText}`.trim() + '.',
        { status: response.status },
      );
    }
    return body.data;
  }

  /** Keys of the writes whose last attempt failed, by document and variables. */
  const failedWrites = new Map();
  const MAX_FAILED_WRITES = 20;

  /**
   * Runs a write that creates something (postStatus, postMessage,
   * sendNotification, recordKPIs) so that sending it again never stores it
   * twice: with an Idempotency-Key header, a fresh key unless the last
   * attempt of the same write (the same document and variables) failed,
   * whose key it reuses, so that sending it again by hand after an error
   * is safe too. An attempt that gets no answer within writeTimeout,
   * cannot reach the server, or is answered UNAVAILABLE (or 502, 503, 504)
   * is sent again with the same key, up to writeAttempts in all, after a
   * short back-off: a server that did the write answers with its result.
   * Resolves and rejects as query does.
   */
  async function write(queryText, variables = {}) {
    const id = queryText + '\n' + JSON.stringify(variables);
    const key = failedWrites.get(id) || newIdempotencyKey();
    failedWrites.delete(id);
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await query(queryText, variables, { idempotencyKey: key, timeout: writeTimeout });
      } catch (err) {
        if (!retryable(err) || attempt >= writeAttempts) {
          failedWrites.set(id, key);
          if (failedWrites.size > MAX_FAILED_WRITES) {
            failedWrites.delete(failedWrites.keys().next().value);
          }
          throw err;
        }
        const ceiling = initialDelay * 2 ** (attempt - 1);
        await new Promise((resolve) => setTimeout(resolve, ceiling / 2 + (Math.random() * ceiling) / 2));
      }
    }
  }

  // ---- WebSocket -----------------------------------------------------------

  /** @type {WebSocket|null} */
  let socket = null;
  let acknowledged = false;
  let attempt = 0; // failed attempts since the last acknowledged connection
  let rejectedToken = null; // a token the server refused with 4403
  let retryTimer = null;
  let ackTimer = null;
  let keepAliveTimer = null;
  let pongTimer = null;
  let disposed = false;
  let nextOperationId = 0;
  let state = null;
  let stateRetryAt = null;

  /** Registered subscriptions, live across reconnects. */
  const registrations = new Set();
  /** Operation id → registration, for the current connection only. */
  const operations = new Map();

  function setState(newState, retryAt = null, extra = {}) {
    if (newState === state && retryAt === stateRetryAt) return;
    state = newState;
    stateRetryAt = retryAt;
    try {
      onStateChange({ state: newState, retryAt, ...extra });
    } catch (err) {
      console.error('switchboard: onStateChange failed', err);
    }
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  function clearTimers() {
    clearTimeout(retryTimer);
    clearTimeout(ackTimer);
    clearTimeout(keepAliveTimer);
    clearTimeout(pongTimer);
    retryTimer = ackTimer = keepAliveTimer = pongTimer = null;
  }

  /** The token to present, unless the server has already refused it. */
  function currentToken() {
    const token = getToken();
    if (!token || token === rejectedToken) return null;
    return token;
  }

  function connect() {
    if (disposed) return;
    clearTimers();
    // 'connecting' until the first acknowledged connection (or after
    // restart()), 'reconnecting' once a connection attempt has failed.
    if (state !== 'connecting' || attempt > 0) setState('reconnecting', null);

    const token = currentToken();
    let ws;
    try {
      ws = new WebSocket(wsURL, SUBPROTOCOL);
    } catch (err) {
      console.error('switchboard: cannot open WebSocket', err);
      scheduleReconnect({ code: 1006, reason: String(err) });
      return;
    }
    socket = ws;
    acknowledged = false;

    ws.onopen = () => {
      if (ws !== socket) return;
      if (ws.protocol && ws.protocol !== SUBPROTOCOL) {
        console.error(`switchboard: server chose subprotocol "${ws.protocol}", expected "${SUBPROTOCOL}"`);
      }
      const payload = token ? { authorization: 'Bearer ' + token } : {};
      ws.tokenSent = token;
      send({ type: 'connection_init', payload });
      ackTimer = setTimeout(() => {
        if (ws === socket && !acknowledged) {
          console.warn('switchboard: no connection_ack in time; reconnecting');
          terminate(CLOSE_ACK_TIMEOUT, 'Connection acknowledgement timeout');
        }
      }, ackTimeout);
    };

    ws.onmessage = (event) => {
      if (ws !== socket) return;
      handleMessage(ws, event.data);
    };

    ws.onclose = (event) => {
      if (ws !== socket) return;
      handleClose(ws, event.code, event.reason);
    };

    // Errors are always followed by a close event, which does the work.
    ws.onerror = () => {};
  }

  /** Drops the current socket at once, without waiting for the close handshake. */
  function terminate(code, reason) {
    const ws = socket;
    if (!ws) return;
    detach(ws, code, reason);
    handleClose(ws, code, reason);
  }

  function detach(ws, code = 1000, reason = '') {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) {
        ws.close(code, reason);
      }
    } catch {
      // Closing a socket that is already going away may throw; nothing to do.
    }
  }

  function armKeepAlive() {
    clearTimeout(keepAliveTimer);
    clearTimeout(pongTimer);
    pongTimer = null;
    if (!keepAlive || !acknowledged) return;
    const ws = socket;
    keepAliveTimer = setTimeout(() => {
      if (ws !== socket) return;
      send({ type: 'ping' });
      pongTimer = setTimeout(() => {
        if (ws !== socket) return;
        console.warn('switchboard: no answer to ping; reconnecting');
        terminate(CLOSE_KEEPALIVE_TIMEOUT, 'Terminated');
      }, ackTimeout);
    }, keepAlive);
  }

  function handleMessage(ws, raw) {
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      message = null;
    }
    if (!message || typeof message !== 'object' || typeof message.type !== 'string') {
      console.error('switchboard: invalid message from server', raw);
      terminate(CLOSE_BAD_MESSAGE, 'Invalid message received');
      return;
    }

    // Any traffic shows the connection is alive.
    if (acknowledged) armKeepAlive();

    switch (message.type) {
      case 'connection_ack':
        if (acknowledged) return;
        acknowledged = true;
        attempt = 0;
        clearTimeout(ackTimer);
        ackTimer = null;
        setState('connected');
        armKeepAlive();
        for (const registration of registrations) startOperation(registration);
        return;

      case 'ping':
        send('payload' in message ? { type: 'pong', payload: message.payload } : { type: 'pong' });
        return;

      case 'pong':
        return;

      case 'next': {
        const registration = operations.get(message.id);
        if (!registration) return;
        const result = message.payload || {};
        if (Array.isArray(result.errors) && result.errors.length > 0) {
          console.warn('switchboard: subscription event carried errors', result.errors);
        }
        callSink(registration, 'next', result.data, result);
        return;
      }

      case 'error': {
        // The operation is over; no complete follows (some servers send one
        // anyway, which is ignored since the id is gone by then).
        const registration = operations.get(message.id);
        if (!registration) return;
        operations.delete(message.id);
        registrations.delete(registration);
        registration.operationId = null;
        callSink(registration, 'error', errorFromList(message.payload));
        return;
      }

      case 'complete': {
        const registration = operations.get(message.id);
        if (!registration) return;
        operations.delete(message.id);
        registrations.delete(registration);
        registration.operationId = null;
        callSink(registration, 'complete');
        return;
      }

      default:
        console.error('switchboard: unexpected message type from server', message.type);
        terminate(CLOSE_BAD_MESSAGE, `Unexpected message type "${message.type}"`);
    }
  }

  function callSink(registration, method, ...args) {
    const fn = registration.sink[method];
    if (typeof fn !== 'function') {
      if (method === 'error') console.error('switchboard: subscription failed', args[0]);
      return;
    }
    try {
      fn(...args);
    } catch (err) {
      console.error(`switchboard: subscription ${method} handler failed`, err);
    }
  }

  function handleClose(ws, code, reason) {
    if (ws !== socket) return;
    socket = null;
    acknowledged = false;
    clearTimers();
    for (const registration of registrations) registration.operationId = null;
    operations.clear();
    if (disposed) return;

    if (code === CLOSE_FORBIDDEN) {
      const token = ws.tokenSent;
      if (token) {
        rejectedToken = token;
        try {
          onTokenRejected(token);
        } catch (err) {
          console.error('switchboard: onTokenRejected failed', err);
        }
      }
    }
    scheduleReconnect({ code, reason });
  }

  function scheduleReconnect({ code, reason }) {
    if (disposed) return;
    let delay;
    if (FATAL_CLOSE_CODES.has(code)) {
      console.error(
        `switchboard: connection closed with ${code}${reason ? ` (${reason})` : ''}; ` +
          `retrying in ${Math.round(maxDelay / 1000)} s`,
      );
      delay = maxDelay;
    } else {
      const ceiling = Math.min(maxDelay, initialDelay * 2 ** attempt);
      delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    }
    attempt += 1;
    const retryAt = Date.now() + delay;
    setState('reconnecting', retryAt, { code });
    clearTimeout(retryTimer);
    retryTimer = setTimeout(() => {
      retryTimer = null;
      setState('reconnecting', null);
      connect();
    }, delay);
  }

  function startOperation(registration) {
    if (!acknowledged || registration.operationId !== null) return;
    let variables;
    try {
      variables =
        typeof registration.variables === 'function'
          ? registration.variables()
          : registration.variables;
    } catch (err) {
      registrations.delete(registration);
      callSink(registration, 'error', err);
      return;
    }
    nextOperationId += 1;
    const id = String(nextOperationId);
    const payload = { query: registration.query };
    if (variables !== undefined && variables !== null) payload.variables = variables;
    if (registration.operationName) payload.operationName = registration.operationName;
    registration.operationId = id;
    operations.set(id, registration);
    send({ type: 'subscribe', id, payload });
  }

  /**
   * Starts a subscription that lives across reconnects until it completes,
   * fails, or the returned function is called.
   *
   * @param {string} queryText the subscription document
   * @param {object} sink
   * @param {object|(() => object)} [sink.variables] variables, or a function
   *   producing them at every (re)subscribe
   * @param {string} [sink.operationName]
   * @param {(data: object, result: object) => void} [sink.next]
   * @param {(error: Error) => void} [sink.error] the operation failed; it is over
   * @param {() => void} [sink.complete] the server ended the stream
   * @returns {() => void} unsubscribe
   */
  function subscribe(queryText, sink = {}) {
    const registration = {
      query: queryText,
      variables: sink.variables,
      operationName: sink.operationName,
      sink,
      operationId: null,
    };
    registrations.add(registration);
    startOperation(registration);
    return () => {
      if (!registrations.has(registration)) return;
      registrations.delete(registration);
      const id = registration.operationId;
      registration.operationId = null;
      if (id !== null && operations.has(id)) {
        operations.delete(id);
        send({ type: 'complete', id });
      }
    };
  }

  /**
   * Reconnects now, for example after sign-in or sign-out so that the new
   * token is used. Subscriptions resubscribe once the new connection is
   * acknowledged.
   */
  function restart() {
    if (disposed) return;
    const ws = socket;
    socket = null;
    acknowledged = false;
    clearTimers();
    if (ws) detach(ws, 1000, 'Restart');
    for (const registration of registrations) registration.operationId = null;
    operations.clear();
    attempt = 0;
    rejectedToken = null;
    setState('connecting');
    connect();
  }

  /** Closes the connection for good and drops every subscription. */
  function dispose() {
    disposed = true;
    window.removeEventListener('online', onOnline);
    const ws = socket;
    socket = null;
    clearTimers();
    if (ws) detach(ws, 1000, 'Normal Closure');
    registrations.clear();
    operations.clear();
  }

  // Come back at once when the browser regains the network, rather than
  // waiting out the backoff.
  function onOnline() {
    if (!disposed && retryTimer !== null) {
      clearTimeout(retryTimer);
      retryTimer = null;
      setState('reconnecting', null);
      connect();
    }
  }
  window.addEventListener('online', onOnline);

  setState('connecting');
  connect();

  return {
    query,
    write,
    subscribe,
    restart,
    dispose,
    /** The current connection state: 'connecting', 'connected' or 'reconnecting'. */
    get state() {
      return state;
    },
  };
}
