package main

import (
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRunPlainAgainstBaseline subscribes without after and reads the
// server's RSS once every subscriber has the first posts, and the most
// goroutines sampled throughout.
func TestRunPlainAgainstBaseline(t *testing.T) {
	url := startBaseline(t)

	const conns = 30
	rep, fields := runJSON(t, "run", "-url", url, "-conns", strconv.Itoa(conns), "-plain", "-rss-after", "3",
		"-rate", "20", "-duration", "1s", "-drain", "5s", "-settle", "50ms", "-sources", "4",
		"-pid", strconv.Itoa(os.Getpid()))

	assert.Equal(t, conns, rep.Connected)
	assert.EqualValues(t, 20, rep.Posts)
	assert.Zero(t, rep.Missing)
	assert.Zero(t, rep.Duplicates)
	assert.Equal(t, rep.Posts*conns, rep.DeliveriesReceived)
	assert.Empty(t, rep.After, "no after sent")
	require.NotNil(t, rep.Server.RSSAfterEventsKiB)
	require.NotNil(t, rep.Server.RSSPerConnAfterEventsKiB)
	require.NotNil(t, rep.Server.GoroutinesMax)
	require.NotNil(t, rep.Server.GoroutinesMaxPerConn)
	assert.GreaterOrEqual(t, *rep.Server.GoroutinesMax, *rep.Server.GoroutinesSubscribed)
	for _, k := range []string{"rssAfterEventsKiB", "rssPerConnAfterEventsKiB", "goroutinesMax", "goroutinesMaxPerConn"} {
		assert.Contains(t, fields["server"], k)
	}
}

func TestStormFlags(t *testing.T) {
	_, err := parseStormFlags(nil, os.Stderr)
	assert.ErrorContains(t, err, "-server is required")
	cfg, err := parseStormFlags([]string{"-server", "/bin/true", "-conns", "10", "-backlog", "3"}, os.Stderr)
	require.NoError(t, err)
	assert.Equal(t, 10, cfg.conns)
	assert.Equal(t, 3, cfg.backlog)
}
