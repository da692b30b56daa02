// Runs the graphql-http package's server audits (the GraphQL over HTTP
// specification's conformance checks) against a Switchboard endpoint and
// prints one JSON line per audit: {id, name, status, reason}. status is
// "ok", "notice", "warn" or "error". httpaudit_test.go reads them.
//
//   node audit.mjs --url http://127.0.0.1:8080/graphql
import { auditServer } from 'graphql-http';

const i = process.argv.indexOf('--url');
if (i < 0 || !process.argv[i + 1]) {
  console.error('usage: node audit.mjs --url http://HOST:PORT/graphql');
  process.exit(2);
}
const results = await auditServer({ url: process.argv[i + 1] });
for (const r of results) {
  let reason = '';
  if (r.status !== 'ok') {
    reason = r.reason;
    try {
      const res = r.response;
      reason += ` (${res.status} ${res.headers.get('content-type')}: ${(await res.text()).slice(0, 300)})`;
    } catch {
      // the response was read by the audit already
    }
  }
  console.log(JSON.stringify({ id: r.id, name: r.name, status: r.status, reason }));
}
