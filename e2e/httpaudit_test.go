package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// auditResult is one line of e2e/httpaudit/audit.mjs: one of the
// graphql-http package's server audits and how the server did.
type auditResult struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Status string `json:"status"` // ok, notice, warn or error
	Reason string `json:"reason"`
}

// TestGraphQLOverHTTPAudit: the GraphQL over HTTP specification's server
// audits (the graphql-http package's auditServer, run by node against the
// real server) pass, every one: no error (a requirement the server breaks)
// and no warning or notice (a recommendation it does not follow). Stock
// gqlgen warns on five; Switchboard's own HTTP transport answers request
// errors with 200 under application/json and with no data entry.
func TestGraphQLOverHTTPAudit(t *testing.T) {
	node, dir := requireNodePackages(t, "httpaudit", "graphql-http")
	s := startServer(t, map[string]string{"DEMO_FEED": "false"})
	s.logsOnFailure(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "audit.mjs"), "--url", s.URL+"/graphql")
	out, err := cmd.Output()
	var stderr string
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = string(ee.Stderr)
	}
	require.NoError(t, err, "node audit.mjs: %s", stderr)
	var results []auditResult
	for line := range strings.Lines(strings.TrimSpace(string(out))) {
		var r auditResult
		require.NoError(t, json.Unmarshal([]byte(line), &r), "line %q", line)
		results = append(results, r)
	}
	t.Logf("%d audits", len(results))
	assert.GreaterOrEqual(t, len(results), 50, "graphql-http has some 60 server audits")
	for _, r := range results {
		assert.Equal(t, "ok", r.Status, "%s %s: %s", r.ID, r.Name, r.Reason)
	}
}
