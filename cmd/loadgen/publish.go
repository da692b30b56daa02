package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The GraphQL documents loadgen sends over HTTP.
const (
	signInMutation = `mutation($n:String!){ signIn(name:$n){ token } }`
	postMutation   = `mutation($t:String!){ postStatus(text:$t){ id } }`
	newestQuery    = `{ statuses(first:1){ edges{ node{ id } } } }`
)

// api is a minimal GraphQL-over-HTTP client of the server under test.
type api struct {
	client   *http.Client
	endpoint string // http://host:port/graphql
	token    string
}

// do POSTs one operation and decodes its data into out. GraphQL errors and
// non-2xx answers are errors.
func (a *api) do(ctx context.Context, query string, vars map[string]any, out any) error {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	var res struct {
		Data   json.RawMessage `json:"data"`
		Errors []struct {
			Message    string `json:"message"`
			Extensions struct {
				Code string `json:"code"`
			} `json:"extensions"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("HTTP %d: %.200q", resp.StatusCode, raw)
	}
	if len(res.Errors) > 0 {
		e := res.Errors[0]
		return fmt.Errorf("HTTP %d: %s (%s)", resp.StatusCode, e.Message, e.Extensions.Code)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d: %.200q", resp.StatusCode, raw)
	}
	return json.Unmarshal(res.Data, out)
}

// signIn returns a guest token for name.
func (a *api) signIn(ctx context.Context, name string) (string, error) {
	var out struct {
		SignIn struct {
			Token string `json:"token"`
		} `json:"signIn"`
	}
	if err := a.do(ctx, signInMutation, map[string]any{"n": name}, &out); err != nil {
		return "", fmt.Errorf("signIn: %w", err)
	}
	if out.SignIn.Token == "" {
		return "", fmt.Errorf("signIn: no token in the answer")
	}
	return out.SignIn.Token, nil
}

// newest returns the id of the newest status, or "0" when the feed is empty.
func (a *api) newest(ctx context.Context) (string, error) {
	var out struct {
		Statuses struct {
			Edges []struct {
				Node struct {
					ID string `json:"id"`
				} `json:"node"`
			} `json:"edges"`
		} `json:"statuses"`
	}
	if err := a.do(ctx, newestQuery, nil, &out); err != nil {
		return "", fmt.Errorf("statuses: %w", err)
	}
	if len(out.Statuses.Edges) == 0 {
		return "0", nil
	}
	return out.Statuses.Edges[0].Node.ID, nil
}

// post posts text and returns the new status's id.
func (a *api) post(ctx context.Context, text string) (string, error) {
	var out struct {
		PostStatus struct {
			ID string `json:"id"`
		} `json:"postStatus"`
	}
	if err := a.do(ctx, postMutation, map[string]any{"t": text}, &out); err != nil {
		return "", fmt.Errorf("postStatus: %w", err)
	}
	return out.PostStatus.ID, nil
}

// statusText is what the publisher posts for seq; subscribers parse the send
// time back out of it. With pad, words follow, after a space, up to about
// pad bytes in all: prose-like text, compressible as much as real posts.
func statusText(runID string, seq int, sent time.Time, pad int) string {
	b := make([]byte, 0, max(48, pad+16))
	b = append(b, "lg:"...)
	b = append(b, runID...)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, sent.UnixNano(), 10)
	pad = min(pad, 480)
	for r := uint64(seq)*0x9e3779b97f4a7c15 + 1; len(b) < pad; {
		r ^= r << 13
		r ^= r >> 7
		r ^= r << 17
		b = append(b, ' ')
		b = append(b, padWords[r%uint64(len(padWords))]...)
	}
	return string(b)
}

// padWords are common English words, for padding.
var padWords = strings.Fields(`the of and to in is you that it he was for on are as with his they at be
this have from or one had by word but not what all were we when your can said there use an each which she
do how their if will up other about out many then them these so some her would make like him into time has
look two more write go see number no way could people my than first water been call who oil its now find
long down day did get come made may part over new sound take only little work know place year live me back
give most very after thing our just name good sentence man think say great where help through much before
line right too mean old any same tell boy follow came want show also around form three small set put end
does another well large must big even such because turn here why ask went men read need land different home
us move try kind hand picture again change off play spell air away animal house point page letter mother
answer found study still learn should world high every near add food between own below country plant last
school father keep tree never start city earth eye light thought head under story saw left few while along
might close something seem next hard open example begin life always those both paper together got group
often run important until children side feet car mile night walk white sea began grow took river four carry`)

// publisher posts statuses on a schedule. Post seq (0-based over the whole
// run) is due at the step's start + i/rate; up to inflight posts run at once,
// and a post that starts more than one interval after it was due counts as
// late (the publisher, or the server's mutation path, could not keep up).
type publisher struct {
	apis     []*api // posting in turn
	pad      int    // bytes of words each text is padded to
	runID    string
	inflight int
	errs     *errorLog

	posted  []bool     // posted[seq]: the post succeeded; each written by one goroutine
	latency *histogram // mutation round trips
}

// stepPosts is what the publisher did in one step.
type stepPosts struct {
	start, end time.Time
	lastLaunch time.Time // when the last post started
	ok, failed atomic.Int64
	late       atomic.Int64
}

// runStep posts n statuses numbered first.. at rate per second and returns
// when all of them have been answered or ctx ends.
func (p *publisher) runStep(ctx context.Context, first, n int, rate float64, res *stepPosts) {
	interval := time.Duration(float64(time.Second) / rate)
	sem := make(chan struct{}, p.inflight)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var wg sync.WaitGroup
	res.start = time.Now()
loop:
	for i := range n {
		due := res.start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				break loop
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		if time.Since(due) > interval {
			res.late.Add(1)
		}
		seq := first + i
		res.lastLaunch = time.Now()
		wg.Go(func() {
			defer func() { <-sem }()
			t0 := time.Now()
			_, err := p.apis[seq%len(p.apis)].post(ctx, statusText(p.runID, seq, t0, p.pad))
			p.latency.record(time.Since(t0))
			if err != nil {
				res.failed.Add(1)
				p.errs.add(err.Error())
				return
			}
			p.posted[seq] = true
			res.ok.Add(1)
		})
	}
	wg.Wait()
	res.end = time.Now()
}

// errorLog keeps the first few distinct error messages and counts them all.
type errorLog struct {
	mu     sync.Mutex
	counts map[string]int
	order  []string
}

const maxDistinctErrors = 10

func (l *errorLog) add(msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts == nil {
		l.counts = make(map[string]int)
	}
	if _, seen := l.counts[msg]; !seen {
		if len(l.order) >= maxDistinctErrors {
			return
		}
		l.order = append(l.order, msg)
	}
	l.counts[msg]++
}

// list returns "message (×count)" lines in first-seen order.
func (l *errorLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.order))
	for _, m := range l.order {
		out = append(out, fmt.Sprintf("%s (×%d)", m, l.counts[m]))
	}
	return out
}
