package gqlws

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// slowInvalid is an executor whose documents never validate, and which
// validates only once released.
type slowInvalid struct {
	graphql.GraphExecutor
	release chan struct{}
}

func (e slowInvalid) CreateOperationContext(context.Context, *graphql.RawParams) (*graphql.OperationContext, gqlerror.List) {
	<-e.release
	return &graphql.OperationContext{}, gqlerror.List{{Message: "invalid"}}
}

func (slowInvalid) DispatchError(_ context.Context, errs gqlerror.List) *graphql.Response {
	return &graphql.Response{Errors: errs}
}

// TestStoppedOperationHearsNoError: an operation that the client stops
// while it is still being validated sends no error afterwards (graphql-ws:
// nothing follows the client's complete but, at most, the server's own).
func TestStoppedOperationHearsNoError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer client.Close()
	server, err := ln.Accept()
	require.NoError(t, err)
	defer server.Close()
	var received []byte
	var mu sync.Mutex
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := client.Read(buf)
			mu.Lock()
			received = append(received, buf[:n]...)
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()

	tr := New(Options{KeepAlive: time.Hour})
	defer tr.Shutdown()
	exec := slowInvalid{release: make(chan struct{})}
	c := benchConnOver(tr, newFrameConn(server), TransportWS)
	c.exec = exec
	c.start(context.Background(), "a", &graphql.RawParams{Query: "{ nope }"})
	require.True(t, c.stop("a"), "the operation runs until the client stops it")
	close(exec.release)
	require.Eventually(t, func() bool { return !c.running("a") }, time.Second, time.Millisecond)

	// A frame that was going to be written has been by now: write a marker
	// after it and read up to it.
	c.writeRaw(completeFrame("marker"))
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(received) > 0
	}, time.Second, time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	assert.NotContains(t, string(received), `"id":"a"`, "no error for the stopped operation: %q", received)
}
