// Command genqlient is Switchboard's Go client example: typed functions
// that genqlient generated from the server's schema (/schema.graphql) and
// operations.graphql sign in as a guest, post statuses, page through the
// feed, and follow statusPosted over a graphql-transport-ws WebSocket.
//
//	go run ./examples/genqlient -url http://localhost:8080/graphql
//
// It prints what it did, one JSON object per line. TestGenqlientExample
// runs it against a real server.
package main

//go:generate go run github.com/Khan/genqlient genqlient.yaml

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/Khan/genqlient/graphql"
	"github.com/gorilla/websocket"
)

func main() {
	endpoint := flag.String("url", "http://localhost:8080/graphql", "the server's GraphQL endpoint")
	name := flag.String("name", "Gopher", "the guest name to sign in as")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, *endpoint, *name, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "genqlient example:", err)
		os.Exit(1)
	}
}

// run signs in, posts two statuses, reads the feed two statuses a page,
// then subscribes to statusPosted from before the first of them, posts a
// third and reads until it arrives. It writes each step to out.
func run(ctx context.Context, endpoint, name string, out io.Writer) error {
	report := json.NewEncoder(out)

	// Sign in: a client without a token may only do this.
	anonymous := graphql.NewClient(endpoint, http.DefaultClient)
	session, err := SignIn(ctx, anonymous, name)
	if err != nil {
		return fmt.Errorf("sign in: %w", err)
	}
	me := session.SignIn
	_ = report.Encode(map[string]any{"step": "signed in", "user": me.User.Name, "expiresAt": me.ExpiresAt})

	// Every later request carries the token.
	client := graphql.NewClient(endpoint, &http.Client{Transport: bearer{me.Token, http.DefaultTransport}})
	var posted []string
	for _, text := range []string{"hello from genqlient", "typed all the way"} {
		p, err := PostStatus(ctx, client, text)
		if err != nil {
			return fmt.Errorf("post: %w", err)
		}
		posted = append(posted, p.PostStatus.Id)
		_ = report.Encode(map[string]any{"step": "posted", "id": p.PostStatus.Id, "text": p.PostStatus.Text, "createdAt": p.PostStatus.CreatedAt})
	}

	// The feed, two statuses a page, newest first.
	after := ""
	for page := 1; ; page++ {
		r, err := Statuses(ctx, client, 2, after)
		if err != nil {
			return fmt.Errorf("statuses: %w", err)
		}
		var texts []string
		for _, e := range r.Statuses.Edges {
			texts = append(texts, e.Node.Text)
		}
		_ = report.Encode(map[string]any{"step": "page", "page": page, "texts": texts})
		if !r.Statuses.PageInfo.HasNextPage {
			break
		}
		after = r.Statuses.PageInfo.EndCursor
	}

	// Follow the feed over a WebSocket, from just before the first status
	// posted above: the two are replayed, then a third arrives live.
	ws := graphql.NewClientUsingWebSocket(
		"ws"+strings.TrimPrefix(endpoint, "http"), // http→ws, https→wss
		dialer{websocket.DefaultDialer},
		graphql.WithConnectionParams(map[string]any{"authorization": "Bearer " + me.Token}),
	)
	errs, err := ws.Start(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer ws.Close()
	events, _, err := StatusPosted(ctx, ws, before(posted[0]))
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	want := 3
	for got := 0; got < want; {
		select {
		case e, ok := <-events:
			if !ok {
				return errors.New("the subscription ended")
			}
			if len(e.Errors) > 0 {
				return fmt.Errorf("subscription: %w", e.Errors)
			}
			s := e.Data.StatusPosted
			got++
			_ = report.Encode(map[string]any{"step": "received", "id": s.Id, "text": s.Text, "author": s.Author.Name})
			if got == 2 { // caught up: now one posted while it listens
				if _, err := PostStatus(ctx, client, "live over the WebSocket"); err != nil {
					return fmt.Errorf("post: %w", err)
				}
			}
		case err := <-errs:
			return fmt.Errorf("websocket: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// before is the status id just before id (ids are positions: 1, 2, …), to
// subscribe with after so that id itself is replayed.
func before(id string) string {
	var n int64
	_, _ = fmt.Sscan(id, &n)
	return fmt.Sprint(n - 1)
}

// bearer adds the token to every request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// dialer adapts gorilla/websocket's Dialer to genqlient's.
type dialer struct{ d *websocket.Dialer }

func (d dialer) DialContext(ctx context.Context, url string, header http.Header) (graphql.WSConn, error) {
	conn, _, err := d.d.DialContext(ctx, url, header)
	return conn, err
}
