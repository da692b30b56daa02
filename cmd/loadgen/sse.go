package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
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
