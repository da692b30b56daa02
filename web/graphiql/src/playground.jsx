// The Switchboard playground: GraphiQL, with everything it needs bundled
// into the page's own two files (see ../build.mjs), talking to the same
// server's /graphql endpoint. Queries and mutations go over HTTP with the
// Headers tab's headers; subscriptions go over a graphql-transport-ws
// WebSocket whose connection_init carries the Headers tab's Authorization.
// A "Sign in" panel fills that header in, and the schema comes from
// /schema.graphql, which the server serves even when introspection is off.
import 'graphiql/style.css';
import './playground.css';

import { Button, useEditorContext } from '@graphiql/react';
import { GraphiQL } from 'graphiql';
import { buildSchema, getOperationAST, parse } from 'graphql';
import { createClient } from 'graphql-ws';
import { StrictMode, useState } from 'react';
import { createRoot } from 'react-dom/client';

const endpoint = '/graphql';
const socketURL = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${endpoint}`;

const defaultQuery = `# Welcome to the Switchboard playground.
#
# Run this query with the ▶ button (Ctrl-Enter).
#
# To post, or to follow what needs a token,
# sign in first: the key icon on the left puts
# an Authorization header in the Headers tab
# below. Queries and mutations send it over
# HTTP; subscriptions in their WebSocket's
# connection_init.
#
#   mutation Post {
#     postStatus(text: "Hello") { id text }
#   }
#   subscription Live {
#     statusPosted { id text author { name } }
#   }

query Feed {
  statuses(first: 10) {
    edges {
      node {
        id
        text
        author {
          name
        }
        createdAt
      }
    }
  }
}
`;

// authorizationOf returns the Authorization value among headers, whatever
// the case of its name, or "".
function authorizationOf(headers) {
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (name.toLowerCase() === 'authorization' && typeof value === 'string') {
      return value;
    }
  }
  return '';
}

// describeFailure turns what graphql-ws rejects with (an Error, a
// CloseEvent, an array of GraphQL errors) into a GraphQL result that
// GraphiQL shows in its response pane.
function describeFailure(failure) {
  if (Array.isArray(failure)) {
    return { errors: failure };
  }
  if (failure && typeof failure.code === 'number' && 'reason' in failure) {
    return {
      errors: [{
        message: `the WebSocket closed with ${failure.code}${failure.reason ? `: ${failure.reason}` : ''}`,
        extensions: { closeCode: failure.code },
      }],
    };
  }
  return { errors: [{ message: String(failure?.message ?? failure) }] };
}

// One WebSocket client per Authorization value: when the header changes,
// the next subscription opens a new connection with it, and the old one
// closes once its subscriptions end (graphql-ws is lazy by default).
let socket = { authorization: null, client: null };

function clientFor(authorization) {
  if (socket.client === null || socket.authorization !== authorization) {
    socket = {
      authorization,
      client: createClient({
        url: socketURL,
        connectionParams: authorization ? { authorization } : {},
      }),
    };
  }
  return socket.client;
}

// subscribe follows a subscription, as an async iterator GraphiQL reads
// results from; GraphiQL's stop button calls return, which completes the
// subscription at once.
function subscribe(params, authorization) {
  const results = clientFor(authorization).iterate(params);
  let failed = false;
  return {
    [Symbol.asyncIterator]() {
      return this;
    },
    async next() {
      if (failed) {
        return { done: true, value: undefined };
      }
      try {
        return await results.next();
      } catch (failure) {
        failed = true;
        return { done: false, value: describeFailure(failure) };
      }
    },
    async return() {
      await results.return?.();
      return { done: true, value: undefined };
    },
  };
}

// post sends a query or mutation over HTTP and returns its result; a
// response that is not GraphQL (a proxy's error page) becomes an error.
async function post(params, headers) {
  const response = await fetch(endpoint, {
    method: 'POST',
    headers: {
      Accept: 'application/graphql-response+json, application/json',
      'Content-Type': 'application/json',
      ...headers,
    },
    body: JSON.stringify(params),
  });
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return { errors: [{ message: `HTTP ${response.status}: ${text.slice(0, 200)}` }] };
  }
}

function fetcher(params, options = {}) {
  const headers = options.headers ?? {};
  let document = options.documentAST;
  if (!document) {
    try {
      document = parse(params.query);
    } catch {
      document = null; // the server will say what is wrong
    }
  }
  const operation = document && getOperationAST(document, params.operationName);
  if (operation?.operation === 'subscription') {
    return subscribe(params, authorizationOf(headers));
  }
  return post(params, headers);
}

// setAuthorization replaces the Authorization header in the Headers tab's
// JSON, keeping the other headers; an empty value removes it.
function setAuthorization(editor, value) {
  let headers = {};
  try {
    const parsed = JSON.parse(editor.getValue() || '{}');
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
      headers = parsed;
    }
  } catch {
    // not JSON: start again from an empty object
  }
  for (const name of Object.keys(headers)) {
    if (name.toLowerCase() === 'authorization') {
      delete headers[name];
    }
  }
  if (value) {
    headers.Authorization = value;
  }
  editor.setValue(JSON.stringify(headers, null, 2));
}

const signInMutation = `mutation SignIn($name: String!) {
  signIn(name: $name) { token expiresAt user { id name } }
}`;

function SignInPanel() {
  const { headerEditor } = useEditorContext({ nonNull: true });
  const [name, setName] = useState('');
  const [token, setToken] = useState('');
  const [state, setState] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  function use(value, description) {
    if (!headerEditor) {
      setError('The Headers tab is not ready yet; try again in a moment.');
      return;
    }
    setAuthorization(headerEditor, value);
    setError(null);
    setState(description);
  }

  async function signInAsGuest(event) {
    event.preventDefault();
    setBusy(true);
    try {
      const result = await post({ query: signInMutation, variables: { name }, operationName: 'SignIn' }, {});
      const session = result?.data?.signIn;
      if (!session) {
        const first = result?.errors?.[0];
        const code = first?.extensions?.code;
        setError(`${first?.message ?? 'sign-in failed'}${code ? ` (${code})` : ''}`);
        return;
      }
      use(`Bearer ${session.token}`, `Signed in as guest ${session.user.name} (user ${session.user.id}) until ${session.expiresAt}.`);
      setName('');
    } catch (failure) {
      setError(`sign-in failed: ${failure.message}`);
    } finally {
      setBusy(false);
    }
  }

  function useToken(event) {
    event.preventDefault();
    const value = token.trim().replace(/^bearer\s+/i, '');
    if (!value) {
      setError('Paste a token first.');
      return;
    }
    use(`Bearer ${value}`, 'Using the pasted token.');
    setToken('');
  }

  return (
    <div className="signin-panel">
      <div className="graphiql-doc-explorer-title">Sign in</div>
      <p>
        Signing in puts <code>Authorization: Bearer &lt;token&gt;</code> in this tab&apos;s Headers. Queries and
        mutations send it over HTTP; subscriptions send it in the WebSocket&apos;s <code>connection_init</code>.
      </p>
      {state && <p className="signin-state" role="status">{state}</p>}
      {error && <p className="signin-error" role="alert">{error}</p>}
      <form onSubmit={signInAsGuest}>
        <label htmlFor="signin-name">As a new guest</label>
        <input id="signin-name" value={name} onChange={(e) => setName(e.target.value)} placeholder="Display name" maxLength={50} required />
        <Button type="submit" disabled={busy}>Sign in as guest</Button>
      </form>
      <form onSubmit={useToken}>
        <label htmlFor="signin-token">With a token</label>
        <textarea id="signin-token" value={token} onChange={(e) => setToken(e.target.value)} placeholder="Paste a token (switchboard token --name …)" spellCheck={false} />
        <Button type="submit">Use this token</Button>
      </form>
      <Button type="button" onClick={() => use('', 'Signed out of this tab: requests go without a token.')}>Sign out of this tab</Button>
    </div>
  );
}

function KeyIcon(props) {
  return (
    <svg viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth="1.5" strokeLinecap="round" strokeLinejoin="round" {...props}>
      <circle cx="7.5" cy="15.5" r="4.5" />
      <path d="M10.7 12.3 20 3m-3 3 3 3m-5.5-.5 2 2" />
    </svg>
  );
}

const plugins = [{ title: 'Sign in', icon: KeyIcon, content: SignInPanel }];

// loadSchema reads the SDL the server serves whatever INTROSPECTION says;
// if that fails, GraphiQL falls back to introspection.
async function loadSchema() {
  try {
    const response = await fetch('/schema.graphql', { headers: { Accept: 'application/graphql' } });
    if (response.ok) {
      return buildSchema(await response.text());
    }
  } catch {
    // fall through
  }
  return undefined;
}

const schema = await loadSchema();
createRoot(document.getElementById('graphiql')).render(
  <StrictMode>
    <GraphiQL
      fetcher={fetcher}
      schema={schema}
      defaultQuery={defaultQuery}
      plugins={plugins}
      defaultEditorToolsVisibility="headers"
    />
  </StrictMode>,
);
