package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/gorilla/websocket"
)

// connect signs user i in as a guest, opens its connection
// (graphql-transport-ws) with its token, subscribes to notificationAdded
// (with after: "0" for even i, without after for odd i) and unreadCount,
// waits for the first count and starts the read loop.
func (r *notifRun) connect(ctx context.Context, d *websocket.Dialer, i int) (*notifUser, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.timeout)
	defer cancel()
	a := &api{client: r.client, endpoint: r.ep.graphql}
	token, err := a.signIn(ctx, fmt.Sprintf("lg-%s-%d", r.runID, i))
	if err != nil {
		return nil, err
	}
	dd := *d
	dd.Subprotocols = []string{transportWS.subprotocol()}
	ws, _, err := dd.DialContext(ctx, r.ep.ws, nil)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	u := &notifUser{ws: ws, got: newBitset(r.total), latencies: make([]int64, 0, r.total), done: make(chan struct{})}
	deadline, _ := ctx.Deadline()
	_ = ws.SetReadDeadline(deadline)
	added, counted := r.subscriptions(i)
	msgs := []any{
		map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer " + token}},
		map[string]any{"type": "subscribe", "id": "n", "payload": added},
	}
	if counted != nil {
		msgs = append(msgs, map[string]any{"type": "subscribe", "id": "u", "payload": counted})
	}
	for _, m := range msgs {
		if err := ws.WriteJSON(m); err != nil {
			_ = ws.Close()
			return nil, fmt.Errorf("write: %w", err)
		}
	}
	for first := r.room != nil; !first; { // a room's subscriptions send nothing first: primeRoom waits for them
		_, msg, err := ws.ReadMessage()
		if err != nil {
			_ = ws.Close()
			return nil, fmt.Errorf("wait for the first unread count: %w", err)
		}
		first = r.handle(u, msg, time.Now())
	}
	_ = ws.SetReadDeadline(time.Time{})
	go r.readLoop(u)
	return u, nil
}

// readLoop reads u's messages until the connection fails or is closed.
func (r *notifRun) readLoop(u *notifUser) {
	defer close(u.done)
	u.lost = readMessages(u.ws, r.errs, func(msg []byte, now time.Time) { r.handle(u, msg, now) })
	if u.lost {
		r.lost.Add(1)
	}
}

// nextMessage is the part of a message loadgen decodes when it cannot
// scan it (see scanFrame).
type nextMessage struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	Payload struct {
		Data struct {
			NotificationAdded *titled            `json:"notificationAdded"`
			UnreadCount       *int               `json:"unreadCount"`
			MessageAdded      *texted            `json:"messageAdded"`
			RoomsChanged      *roomsChangedEvent `json:"roomsChanged"`
		} `json:"data"`
		Errors json.RawMessage `json:"errors"`
	} `json:"payload"`
}

type titled struct {
	Title string `json:"title"`
}

type texted struct {
	Text string `json:"text"`
}

// frame is what loadgen reads of a message: its type and operation id
// and, of a next message, the one field of its data. A scanned frame's
// byte slices point into the message read, which the next read reuses.
type frame struct {
	typ    string // next, ping, error…
	id     []byte
	errors bool // a next message with errors
	field  int
	text   []byte // fieldAdded: the title or text; fieldRooms: the last message's text, if any
	count  int    // fieldCount: the count; fieldRooms: the room's unread count
	roomID []byte // fieldRooms
	last   bool   // fieldRooms: the room has a last message
}

// What a next message of loadgen's documents carries.
const (
	fieldNone  = iota
	fieldAdded // notificationAdded { id title } or messageAdded { id text }
	fieldCount // unreadCount
	fieldRooms // roomsChanged { id unreadCount lastMessage { id text } }
)

// handle records one message received at now and reports whether it was
// a result of the count or room list ("u").
func (r *notifRun) handle(u *notifUser, msg []byte, now time.Time) bool {
	f, ok := scanFrame(msg)
	if !ok {
		if f, ok = decodeFrame(msg); !ok {
			return false
		}
		if f.typ == "next" {
			r.decoded.Add(1)
		}
	}
	switch {
	case f.typ == "ping":
		_ = u.ws.WriteMessage(websocket.TextMessage, pongMessage)
	case f.typ == "error" || f.errors:
		r.errs.add(fmt.Sprintf("subscription %s: %.200s", f.id, msg))
	case f.typ != "next":
	case string(f.id) == "n" && f.field == fieldAdded:
		if r.room != nil {
			r.primed(u, f.text, &u.primedAdded, &r.room.primedAdded)
		}
		seq, sent, ok := r.parseTitle(f.text)
		if !ok {
			break // someone else's, or from before loadgen started
		}
		if u.got.has(seq) {
			u.duplicates++
			break
		}
		u.got.set(seq)
		u.latencies = append(u.latencies, now.UnixNano()-sent)
		r.added.Add(1)
	case string(f.id) == "u" && f.field == fieldCount:
		if u.counts == nil {
			u.initial, u.counts = f.count, make([]int64, 0, r.total)
		}
		for len(u.counts) < f.count-u.initial && len(u.counts) < r.total {
			u.counts = append(u.counts, now.UnixNano())
			r.shown.Add(1)
		}
		u.last = f.count
	case string(f.id) == "u" && f.field == fieldRooms:
		r.roomShown(u, &f, now)
	}
	return string(f.id) == "u"
}

// scanFrame reads msg without decoding JSON or allocating when it is a next
// message of the compact shape the server writes for loadgen's documents
// (no spaces, fields in selection order, strings without escapes), as
// parseFast does for the status feed's reference, so that a message costs
// loadgen's clients the same in the workload as in its reference.
// Anything else (errors, pings, another shape) returns false, for
// decodeFrame.
func scanFrame(msg []byte) (frame, bool) {
	s := scanner{b: msg, ok: true}
	f := frame{typ: "next"}
	s.expect(`{"type":"next","id":`)
	f.id = s.str()
	s.expect(`,"payload":{"data":{`)
	switch {
	case s.has(`"notificationAdded":{"id":`):
		s.str()
		s.expect(`,"title":`)
		f.field, f.text = fieldAdded, s.str()
		s.expect(`}`)
	case s.has(`"messageAdded":{"id":`):
		s.str()
		s.expect(`,"text":`)
		f.field, f.text = fieldAdded, s.str()
		s.expect(`}`)
	case s.has(`"unreadCount":`):
		f.field, f.count = fieldCount, s.num()
	case s.has(`"roomsChanged":{"id":`):
		f.field, f.roomID = fieldRooms, s.str()
		s.expect(`,"unreadCount":`)
		f.count = s.num()
		s.expect(`,"lastMessage":`)
		if !s.has(`null`) {
			s.expect(`{"id":`)
			s.str()
			s.expect(`,"text":`)
			f.text, f.last = s.str(), true
			s.expect(`}`)
		}
		s.expect(`}`)
	default:
		s.ok = false
	}
	s.expect(`}}}`)
	if !s.ok || len(s.b) > 0 {
		return frame{}, false
	}
	return f, true
}

// decodeFrame decodes msg as JSON: any message, in any valid shape.
func decodeFrame(msg []byte) (frame, bool) {
	var m nextMessage
	if json.Unmarshal(msg, &m) != nil {
		return frame{}, false
	}
	f := frame{typ: m.Type, id: []byte(m.ID), errors: len(m.Payload.Errors) > 0}
	switch d := m.Payload.Data; {
	case d.NotificationAdded != nil:
		f.field, f.text = fieldAdded, []byte(d.NotificationAdded.Title)
	case d.MessageAdded != nil:
		f.field, f.text = fieldAdded, []byte(d.MessageAdded.Text)
	case d.UnreadCount != nil:
		f.field, f.count = fieldCount, *d.UnreadCount
	case d.RoomsChanged != nil:
		f.field, f.roomID, f.count = fieldRooms, []byte(d.RoomsChanged.ID), d.RoomsChanged.UnreadCount
		if l := d.RoomsChanged.LastMessage; l != nil {
			f.text, f.last = []byte(l.Text), true
		}
	}
	return f, true
}

// scanner reads a JSON message of a known shape from the front of b; ok
// turns false at the first thing that does not fit.
type scanner struct {
	b  []byte
	ok bool
}

// has consumes p if b starts with it.
func (s *scanner) has(p string) bool {
	if s.ok && len(s.b) >= len(p) && string(s.b[:len(p)]) == p {
		s.b = s.b[len(p):]
		return true
	}
	return false
}

// expect consumes p, or fails the scan.
func (s *scanner) expect(p string) {
	if !s.has(p) {
		s.ok = false
	}
}

// str consumes a string without escapes and returns its contents (part of
// b, not a copy).
func (s *scanner) str() []byte {
	if !s.has(`"`) {
		s.ok = false
		return nil
	}
	for i, c := range s.b {
		switch c {
		case '"':
			v := s.b[:i]
			s.b = s.b[i+1:]
			return v
		case '\\':
			s.ok = false
			return nil
		}
	}
	s.ok = false
	return nil
}

// num consumes a non-negative integer.
func (s *scanner) num() int {
	n, i := 0, 0
	for ; s.ok && i < len(s.b) && s.b[i] >= '0' && s.b[i] <= '9' && i < 9; i++ {
		n = n*10 + int(s.b[i]-'0')
	}
	if i == 0 {
		s.ok = false
	}
	s.b = s.b[i:]
	return n
}

// parseTitle reads the broadcast number and send time from a title
// "lg:<runID>:<seq>:<unix nanos>"; ok=false for anyone else's.
func (r *notifRun) parseTitle(title []byte) (seq int, sent int64, ok bool) {
	rest, found := bytes.CutPrefix(title, r.titlePrefix)
	if !found {
		return 0, 0, false
	}
	q, rest, ok := cutInt(rest, ':')
	if !ok {
		return 0, 0, false
	}
	sent, ok = digits(rest)
	return int(q), sent, ok && q < int64(r.total)
}

// broadcast sends the planned broadcasts at the configured rate, each on
// its own goroutine so that a slow answer does not delay the next.
func (r *notifRun) broadcast(ctx context.Context) {
	admin := &api{client: r.client, endpoint: r.ep.graphql, token: r.cfg.adminToken}
	if r.room != nil {
		admin.token = r.room.posterToken
	}
	interval := time.Duration(float64(time.Second) / r.cfg.rate)
	fmt.Fprintf(r.progress, "broadcasting %d at %g/s\n", r.total, r.cfg.rate)
	t0 := time.Now()
	done := make(chan struct{}, r.total)
	for seq := range r.total {
		if sleepCtx(ctx, time.Until(t0.Add(time.Duration(seq)*interval))) != nil {
			break
		}
		go func() {
			defer func() { done <- struct{}{} }()
			sent := time.Now()
			id, err := r.post(ctx, admin, fmt.Sprintf("lg:%s:%d:%d", r.runID, seq, sent.UnixNano()))
			if err != nil || id == 0 {
				r.errs.add(fmt.Sprintf("%s: %v", r.mutationName(), err))
				return
			}
			r.mu.Lock()
			r.sent[seq], r.ids[seq] = sent.UnixNano(), id
			r.mu.Unlock()
		}()
	}
	for range r.total {
		<-done
	}
}

// waitDrain waits until every user has received every broadcast and a
// count showing them all, or -drain has passed.
func (r *notifRun) waitDrain(ctx context.Context) {
	var ok int64
	for _, id := range r.ids {
		if id != 0 {
			ok++
		}
	}
	want := ok * int64(len(r.users))
	deadline := time.Now().Add(r.cfg.drain)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for (r.added.Load() < want || r.shown.Load() < want) && time.Now().Before(deadline) {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// closeAll closes every connection and waits for the read loops.
func (r *notifRun) closeAll() {
	if r.cfg.sse {
		for _, u := range r.users {
			for _, st := range u.streams {
				_ = st.Close()
			}
		}
		for _, u := range r.users {
			<-u.done
		}
	} else {
		closeAll(r.users, func(u *notifUser) (*websocket.Conn, <-chan struct{}) { return u.ws, u.done })
	}
	r.users = nil
}

// fill closes the connections and computes the report's deliveries.
func (r *notifRun) fill(rep *NotificationsReport) {
	users := r.users
	r.closeAll()
	// The unread count goes up by one per broadcast, in the order of their
	// ids: the k-th broadcast by id shows as initial+k.
	var order []int
	for seq, id := range r.ids {
		if id != 0 {
			order = append(order, seq)
		}
	}
	slices.SortFunc(order, func(a, b int) int { return int(r.ids[a] - r.ids[b]) })
	rep.Broadcasts, rep.BroadcastErrors = int64(len(order)), int64(r.total-len(order))
	added, unread := newHistogram(), newHistogram()
	for _, u := range users {
		for _, l := range u.latencies {
			added.record(time.Duration(l))
		}
		rep.NotificationAdded.Received += int64(len(u.latencies))
		rep.NotificationAdded.Duplicates += u.duplicates
		for k, seq := range order {
			if k < len(u.counts) {
				unread.record(time.Duration(u.counts[k] - r.sent[seq]))
			}
		}
		rep.UnreadCount.Received += int64(min(len(u.counts), len(order)))
		if u.last < u.initial+len(order) {
			rep.UnreadCount.Missing++
		}
		if u.lost {
			rep.Disconnects++
		}
	}
	n := int64(len(users))
	rep.NotificationAdded.Expected = rep.Broadcasts * n
	rep.NotificationAdded.Missing = max(0, rep.NotificationAdded.Expected-rep.NotificationAdded.Received)
	rep.NotificationAdded.Latency = added.summary()
	rep.UnreadCount.Expected = rep.Broadcasts * n
	rep.UnreadCount.Latency = unread.summary()
	if r.cfg.noLists {
		rep.UnreadCount = DeliveryReport{}
	}
	rep.Lists = r.room != nil && !r.cfg.noLists
	rep.DecodedResults = r.decoded.Load()
}

// writeNotifTable prints the report as a table, with the reference beside.
func writeNotifTable(out io.Writer, r *NotificationsReport) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "notifications workload\t%s, %d users (%d connected, %d errors), %d broadcasts at %g/s (%d failed)\n",
		r.Target, r.Users, r.Connected, r.ConnectErrors, r.Broadcasts, r.Rate, r.BroadcastErrors)
	d := func(name string, x DeliveryReport) {
		fmt.Fprintf(w, "%s\tp50 %s, p99 %s, max %s; %d/%d received, %d missing, %d duplicates\n", name,
			msStr(x.Latency.P50Ms), msStr(x.Latency.P99Ms), msStr(x.Latency.MaxMs), x.Received, x.Expected, x.Missing, x.Duplicates)
	}
	d("notificationAdded publish→receive", r.NotificationAdded)
	d("unreadCount publish→new value", r.UnreadCount)
	if ref := r.Reference; ref != nil {
		fmt.Fprintf(w, "statusPosted reference (same size, rate)\tp50 %s, p99 %s; %d/%d connected, %d missing, server CPU %s\n",
			msStr(ref.Latency.P50Ms), msStr(ref.Latency.P99Ms), ref.Connected, ref.Conns, ref.Missing, pct(ref.Server.CPUPercent))
		fmt.Fprintf(w, "p99 ratios to the status feed\tnotificationAdded %s, unreadCount %s\n", num(r.NotificationAddedP99Ratio), num(r.UnreadCountP99Ratio))
	}
	fmt.Fprintf(w, "server CPU while broadcasting\t%s\n", pct(r.Server.CPUPercent))
	fmt.Fprintf(w, "server RSS before / subscribed / after events\t%s / %s / %s\n", kib(r.Server.RSSBeforeKiB), kib(r.Server.RSSSubscribedKiB), kib(r.Server.RSSEndKiB))
	fmt.Fprintf(w, "server goroutines before / subscribed / after\t%s / %s / %s\n", intStr(r.Server.GoroutinesBefore), intStr(r.Server.GoroutinesSubscribed), intStr(r.Server.GoroutinesEnd))
	fmt.Fprintf(w, "database statements per broadcast (after the first)\t%s (the first: %s)\n", num(r.StatementsPerBroadcast), num(r.StatementsFirstBroadcast))
	fmt.Fprintf(w, "slow-consumer disconnects / connections lost\t%s / %d\n", intStr(r.SlowConsumerDisconnects), r.Disconnects)
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error\t%s\n", e)
	}
	_ = w.Flush()
}
