package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/app"
)

// TestGenqlientExample runs the example against a real server (SQLite, an
// in-process broker) twice, as two users, and checks what each run
// received: its posts, the whole feed over pages of two, and over the
// WebSocket its two posts replayed and a third live, in order. It also
// checks that examples/schema.graphql, which the code was generated from, is the
// schema the server serves.
func TestGenqlientExample(t *testing.T) {
	vars := map[string]string{"ADDR": "127.0.0.1:0", "DATA_DIR": t.TempDir(), "DEMO_FEED": "false", "LOG_LEVEL": "warn"}
	cfg, err := app.ParseConfig(nil, func(k string) string { return vars[k] }, io.Discard)
	require.NoError(t, err)
	srv, err := app.Start(t.Context(), cfg, io.Discard)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})

	resp, err := http.Get(srv.URL() + "/schema.graphql")
	require.NoError(t, err)
	served, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	committed, err := os.ReadFile("../schema.graphql")
	require.NoError(t, err)
	require.Equal(t, string(served), string(committed), "schema.graphql is stale: curl -s <server>/schema.graphql > examples/schema.graphql, then go generate ./examples/genqlient and npm run codegen --prefix examples/typescript")

	type step struct {
		Step, ID, Text, Author, User string
		Page                         int
		Texts                        []string
	}
	runAs := func(name string) []step {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		var out bytes.Buffer
		require.NoError(t, run(ctx, srv.URL()+"/graphql", name, &out), "output:\n%s", out.String())
		var steps []step
		for sc := bufio.NewScanner(&out); sc.Scan(); {
			var s step
			require.NoError(t, json.Unmarshal(sc.Bytes(), &s))
			steps = append(steps, s)
		}
		return steps
	}

	runAs("First")
	steps := runAs("Second")
	require.NotEmpty(t, steps)
	assert.Equal(t, step{Step: "signed in", User: "Second"}, steps[0])
	var posted []string
	var feed []string
	var received []step
	for _, s := range steps {
		switch s.Step {
		case "posted":
			posted = append(posted, s.ID)
		case "page":
			assert.LessOrEqual(t, len(s.Texts), 2, "page %d", s.Page)
			feed = append(feed, s.Texts...)
		case "received":
			received = append(received, s)
		}
	}
	require.Len(t, posted, 2)
	// Newest first, both runs' posts (First's live one included), over pages.
	assert.Equal(t, []string{"typed all the way", "hello from genqlient", "live over the WebSocket", "typed all the way", "hello from genqlient"}, feed)
	require.Len(t, received, 3)
	assert.Equal(t, posted, []string{received[0].ID, received[1].ID}, "the two posts, replayed in order")
	assert.Equal(t, step{Step: "received", ID: next(posted[1]), Text: "live over the WebSocket", Author: "Second"}, received[2])
}

// next is the status id after id.
func next(id string) string {
	n, _ := strconv.Atoi(id)
	return strconv.Itoa(n + 1)
}
