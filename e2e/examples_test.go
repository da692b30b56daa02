package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTypeScriptExamples: examples/typescript type-checks under tsc
// (strict, with the types graphql-codegen's client preset generated from
// the schema), and its Apollo Client and urql examples, run in Node against
// a real server, sign in, post, read the feed, get a status replayed and
// one live over graphql-transport-ws, and follow a chat room. Apollo's
// cache holds one record per status, whether the query or the
// subscription brought it.
func TestTypeScriptExamples(t *testing.T) {
	node, dir := requireNodePackages(t, "../examples/typescript", "@apollo/client", "@urql/core", "typescript")
	tsc := exec.Command(node, filepath.Join("node_modules", "typescript", "bin", "tsc"), "-p", ".")
	tsc.Dir = dir
	out, err := tsc.CombinedOutput()
	require.NoError(t, err, "tsc:\n%s", out)

	srv := startServer(t, map[string]string{"DEMO_FEED": "false"})
	srv.logsOnFailure(t)
	type step struct {
		Step, ID, Text, Room, Author, User, Error string
		IDs, Texts, Statuses                      []string
		LiveID                                    string `json:"liveId"`
	}
	run := func(script, name string) map[string]step {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, filepath.Join("dist", script), "--url", srv.URL+"/graphql", "--name", name)
		cmd.Dir = dir
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		require.NoError(t, err, "%s:\n%s\n%s", script, stdout.String(), stderr.String())
		steps := map[string]step{}
		for sc := bufio.NewScanner(&stdout); sc.Scan(); {
			var s step
			require.NoError(t, json.Unmarshal(sc.Bytes(), &s), "%s: %s", script, sc.Text())
			steps[s.Step] = s
		}
		require.Contains(t, steps, "done", "%s:\n%s\n%s", script, stdout.String(), stderr.String())
		return steps
	}

	for _, c := range []struct{ script, name, live string }{
		{"apollo.js", "Ada", "live through GraphQLWsLink"},
		{"urql.js", "Bo", "live through subscriptionExchange"},
	} {
		t.Run(c.script, func(t *testing.T) {
			steps := run(c.script, c.name)
			assert.Equal(t, c.name, steps["signed in"].User)
			posted := steps["posted"]
			assert.Equal(t, posted.ID, steps["feed"].IDs[0], "the feed, newest first, starts with the post")
			received := steps["received"]
			require.Len(t, received.IDs, 2)
			assert.Equal(t, posted.ID, received.IDs[0], "the post, replayed")
			assert.Equal(t, c.live, received.Texts[1], "then the live one")
			assert.Equal(t, step{Step: "message", Room: c.name + "'s room", Text: "hi, room", Author: c.name}, steps["message"])
			if c.script == "apollo.js" {
				var want []string
				for _, id := range append(steps["feed"].IDs, received.IDs...) {
					if !slices.Contains(want, "Status:"+id) {
						want = append(want, "Status:"+id)
					}
				}
				slices.Sort(want)
				assert.Equal(t, want, steps["cache"].Statuses, "one cache record per status")
			}
		})
	}
}
