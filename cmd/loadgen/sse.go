package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// The -proto sse subscribers: each an event stream (GraphQL over
// Server-Sent Events, a GET of /graphql with Accept: text/event-stream)
// instead of a WebSocket, so that the two transports' fan-out can be
// measured the same way, against the same server.

// sseClients returns one HTTP client per source address (netDialers);
// each stream holds its own connection. With compress,
// the client asks for gzip and Go's transport decodes it.
func sseClients(host string, sources int, timeout time.Duration, compress bool) []*http.Client {
	var cs []*http.Client
	for _, nd := range netDialers(host, sources, timeout) {
		cs = append(cs, &http.Client{Transport: &http.Transport{
			DialContext:           nd.DialContext, // its Timeout bounds the dial
			ResponseHeaderTimeout: timeout,        // and this the wait for the stream's headers
			DisableCompression:    !compress,
			MaxIdleConnsPerHost:   -1, // a stream's connection is not reused
		}})
	}
	return cs
}

// sseStreamURL is the GET of the subscription in payload.
func sseStreamURL(graphqlURL string, payload map[string]any) string {
	q := url.Values{"query": {payload["query"].(string)}}
	if v, ok := payload["variables"]; ok {
		q.Set("variables", string(mustJSON(v)))
	}
	return graphqlURL + "?" + q.Encode()
}

// connectSSE opens stream i and waits for its headers (within the
// client's ResponseHeaderTimeout): the server answers them once the
// request is read, a moment before the subscription's resolver runs. The
// stream lasts as long as ctx, or until closeAll closes it.
func (c *connector) connectSSE(ctx context.Context, i int) (*subscriber, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.sseURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.sse[i%len(c.sse)].Do(req)
	if err != nil {
		return nil, fmt.Errorf("open stream: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("open stream: status %s", resp.Status)
	}
	return &subscriber{body: resp.Body, proto: sseProto, got: newBitset(c.tally.total())}, nil
}

// readSSE reads a stream's events until it ends: each next event's data
// is a GraphQL response.
func (s *subscriber) readSSE(t *tally) {
	r := bufio.NewReaderSize(s.body, 4096)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			if !t.closing.Load() {
				t.disconnects.Add(1)
				t.errs.add("stream lost: " + err.Error())
			}
			return
		}
		data, ok := bytes.CutPrefix(line, []byte("data: "))
		if !ok {
			if bytes.HasPrefix(line, []byte("event: complete")) {
				s.ended = true
				t.subErrors.Add(1)
				t.errs.add("the stream completed")
			}
			continue // event and id lines, comments, blank lines
		}
		s.handleResult(t, data, time.Now())
	}
}

// handleResult records one GraphQL response of statusPosted.
func (s *subscriber) handleResult(t *tally, payload []byte, now time.Time) {
	if id, seq, sent, ok := t.parseFast(payload); ok {
		s.deliver(t, id, seq, sent, now)
		return
	}
	var p struct {
		Data struct {
			StatusPosted *struct {
				ID   json.Number `json:"id"`
				Text string      `json:"text"`
			} `json:"statusPosted"`
		} `json:"data"`
		Errors json.RawMessage `json:"errors"`
	}
	if err := json.Unmarshal(payload, &p); err != nil || p.Data.StatusPosted == nil || len(p.Errors) > 0 {
		t.subErrors.Add(1)
		t.errs.add(fmt.Sprintf("next: %.200s", payload))
		return
	}
	id, err := p.Data.StatusPosted.ID.Int64()
	seq, sent, ok := t.parseText(p.Data.StatusPosted.Text)
	if err != nil || !ok {
		s.foreign++
		return
	}
	s.deliver(t, id, seq, sent, now)
}

// connectSSE signs user i in as a guest and opens an event stream for each
// of its subscriptions (see notifRun.connect), with client, each read by a
// goroutine of its own. It returns once the first unread count has come
// (the room workload: at once, primeRoom waits for its streams).
func (r *notifRun) connectSSE(ctx context.Context, client *http.Client, i int) (*notifUser, error) {
	cctx, cancel := context.WithTimeout(ctx, r.cfg.timeout)
	defer cancel()
	a := &api{client: r.client, endpoint: r.ep.graphql}
	token, err := a.signIn(cctx, fmt.Sprintf("lg-%s-%d", r.runID, i))
	if err != nil {
		return nil, err
	}
	u := &notifUser{got: newBitset(r.total), latencies: make([]int64, 0, r.total), done: make(chan struct{})}
	first := make(chan struct{})
	var firstOnce sync.Once
	added, counted := r.subscriptions(i)
	subs := map[string]map[string]any{"n": added}
	if counted != nil {
		subs["u"] = counted
	} else {
		firstOnce.Do(func() { close(first) })
	}
	var readers sync.WaitGroup
	for id, payload := range subs {
		// The stream lasts until closeAll closes its body, not as long as
		// the connect timeout.
		req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, sseStreamURL(r.ep.graphql, payload), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err == nil && resp.StatusCode != http.StatusOK {
			_ = resp.Body.Close()
			err = fmt.Errorf("status %s", resp.Status)
		}
		if err != nil {
			for _, st := range u.streams {
				_ = st.Close()
			}
			return nil, fmt.Errorf("open the %s stream: %w", id, err)
		}
		u.streams = append(u.streams, resp.Body)
		prefix := []byte(`{"type":"next","id":"` + id + `","payload":`)
		readers.Go(func() {
			if r.readStream(u, resp.Body, prefix, func() { firstOnce.Do(func() { close(first) }) }) {
				r.lost.Add(1)
			}
		})
	}
	go func() {
		readers.Wait()
		close(u.done)
	}()
	if r.room == nil {
		select {
		case <-first:
		case <-cctx.Done():
			for _, st := range u.streams {
				_ = st.Close()
			}
			<-u.done
			return nil, fmt.Errorf("wait for the first unread count: %w", cctx.Err())
		}
	}
	return u, nil
}

// readStream hands each next event of body to handle as the WebSocket
// message it would be (prefix, its data, "}"), calling counted after the
// first result of the count or room list, until the stream ends; it
// reports whether the stream was lost (not closed by closeAll).
func (r *notifRun) readStream(u *notifUser, body io.Reader, prefix []byte, counted func()) (lost bool) {
	br := bufio.NewReaderSize(body, 4096)
	msg := slices.Clone(prefix)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if !strings.Contains(err.Error(), "closed") {
				r.errs.add("stream lost: " + err.Error())
				return true
			}
			return false
		}
		if bytes.HasPrefix(line, []byte("event: complete")) {
			r.errs.add("a stream completed")
			continue
		}
		data, ok := bytes.CutPrefix(line, []byte("data: "))
		if !ok {
			continue // event and id lines, comments, blank lines
		}
		msg = append(append(msg[:len(prefix)], bytes.TrimRight(data, "\r\n")...), '}')
		if r.handle(u, msg, time.Now()) {
			counted()
		}
	}
}
