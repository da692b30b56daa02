// Package e2e holds Switchboard's end-to-end tests: real servers (started
// in-process with app.Start, or as processes that the tests kill and
// restart), real WebSocket and HTTP clients, the real graphql-ws JavaScript
// client (jsclient/), the graphql-http server audits (httpaudit/),
// headless Chromium, nginx, several replicas, and
// outages of Redis and the database. Unit tests live beside their code.
//
// harness_test.go is the one harness the tests share: servers and
// processes, tokens, GraphQL over HTTP, WebSocket clients for both
// protocols, chat, KPI and notification helpers, durable-stream resumption
// and metrics. harness_browser_test.go drives Chromium. Tests that need a
// service (MariaDB, Redis, nginx, node, Chromium) skip with a message when
// it is absent; REQUIRE_SERVICES=1 turns those skips into failures.
package e2e
