package e2e

import (
	"testing"

	"github.com/switchboardhq/switchboard/store/storetest"
)

// The delivery promise of statusPosted(after): whatever happens to the
// connection, a client that resumes with the last id it saw ends up with
// every status exactly once, in order — while many clients post at once.

func TestResumeUnderConcurrentPosters(t *testing.T) {
	for _, backend := range []string{"sqlite", "mysql"} {
		t.Run(backend, func(t *testing.T) {
			env := map[string]string{"LIMIT_STATUSES": "0", "LIMIT_REQUESTS": "0"} // posters flood on purpose
			if backend == "mysql" {
				env["DATABASE_URL"] = storetest.MySQLURL(t)
			}
			s := startServer(t, env)
			checkResume(t, statusFeed, []*testServer{s}, []*testServer{s}, 6, 40)
		})
	}
}

// TestResumeAcrossProcesses runs two server processes on one MySQL database,
// posting through both, with a resuming subscriber on each: ids are handed
// out in commit order by the database, not by a lock inside one process.
func TestResumeAcrossProcesses(t *testing.T) {
	url := storetest.MySQLURL(t)
	env := map[string]string{"DATABASE_URL": url, "LOG_LEVEL": "info", "LIMIT_STATUSES": "0", "LIMIT_REQUESTS": "0"} // posters flood on purpose
	a := startProcess(t, env)
	b := startProcess(t, env)
	checkResume(t, statusFeed, []*testServer{a, b}, []*testServer{a, b}, 6, 40)
}
