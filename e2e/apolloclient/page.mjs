// The cross-origin page of apolloclient_test.go: Apollo Client, bundled by
// build.mjs and served from the test's own server (another origin than
// Switchboard's), exposes window.switchboardTest for the test to drive.
import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";

// requests records each request the page's fetch made: the headers it
// sent, whether the body held the query and a persisted-query hash, and
// the status it got (or the error, such as a CORS refusal).
const requests = [];

async function recordingFetch(url, init) {
  const body = typeof init?.body === "string" ? JSON.parse(init.body) : {};
  const entry = {
    headers: Object.fromEntries(new Headers(init?.headers).entries()),
    hasQuery: typeof body.query === "string",
    hashed: !!body.extensions?.persistedQuery,
  };
  requests.push(entry);
  try {
    const resp = await fetch(url, init);
    entry.status = resp.status;
    return resp;
  } catch (err) {
    entry.error = String(err);
    throw err;
  }
}

async function sha256(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

const feedQuery = gql`
  query Feed {
    statuses(first: 1) {
      edges {
        node {
          id
          text
        }
      }
    }
  }
`;

window.switchboardTest = {
  requests,
  // run queries the feed at uri with a new client named
  // switchboard-e2e 1.2.3 (through automatic persisted queries when
  // persisted is set) and resolves to {data} or {error}.
  async run(uri, persisted) {
    const http = new HttpLink({ uri, fetch: recordingFetch });
    const client = new ApolloClient({
      link: persisted ? new PersistedQueryLink({ sha256 }).concat(http) : http,
      cache: new InMemoryCache(),
      clientAwareness: { name: "switchboard-e2e", version: "1.2.3" },
    });
    try {
      const { data } = await client.query({ query: feedQuery, fetchPolicy: "network-only" });
      return { data };
    } catch (err) {
      return { error: String(err) };
    }
  },
};
