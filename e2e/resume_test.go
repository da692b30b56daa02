package e2e

import (
	"testing"

	"github.com/switchboardhq/switchboard/store"
)

// The delivery promise of statusPosted(after): whatever happens to the
// connection, a client that resumes with the last id it saw ends up with
// every status exactly once, in order — while many clients post at once.

func TestResumeUnderConcurrentPosters(t *testing.T) {
	for _, backend := range databases {
		t.Run(string(backend), func(t *testing.T) {
			env := withDatabase(t, backend, map[string]string{"LIMIT_STATUSES": "0", "LIMIT_REQUESTS": "0"}) // posters flood on purpose
			s := startServer(t, env)
			checkResume(t, statusFeed, []*testServer{s}, []*testServer{s}, 6, 40)
		})
	}
}

// TestResumeAcrossProcesses runs two server processes on one MySQL or
// PostgreSQL database, posting through both, with a resuming subscriber on
// each: ids are handed out in commit order by the database, not by a lock
// inside one process.
func TestResumeAcrossProcesses(t *testing.T) {
	for _, backend := range []store.Dialect{store.MySQL, store.Postgres} {
		t.Run(string(backend), func(t *testing.T) {
			env := withDatabase(t, backend, map[string]string{"LOG_LEVEL": "info", "LIMIT_STATUSES": "0", "LIMIT_REQUESTS": "0"}) // posters flood on purpose
			a := startProcess(t, env)
			b := startProcess(t, env)
			checkResume(t, statusFeed, []*testServer{a, b}, []*testServer{a, b}, 6, 40)
		})
	}
}
