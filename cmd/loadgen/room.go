package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// The room workload: -users guests in one public room (the general room
// unless -room), each on one connection subscribed to the room's
// messageAdded (half of them with after, half without) and to
// roomsChanged, and a guest posting to the room at -rate. It times
// publish→receive of each message and how long each user's room list takes
// to show it (the first roomsChanged whose lastMessage is it or later),
// then measures the status feed at the same size and rate in the same
// invocation. It runs on the notifications workload's machinery.
const (
	messageAddedAfter  = `subscription($r: ID!, $a: ID){ messageAdded(roomId: $r, after: $a){ id text } }`
	messageAddedLive   = `subscription($r: ID!){ messageAdded(roomId: $r){ id text } }`
	roomsChangedFields = `subscription{ roomsChanged{ id unreadCount lastMessage{ id text } } }`
	postMessageMut     = `mutation($r: ID!, $t: String!){ postMessage(roomId: $r, text: $t){ id } }`
	generalRoomQuery   = `{ rooms(first: 1, search: "general"){ edges{ node{ id name } } } }`
)

// roomWorkload is the room workload's part of a notifRun.
type roomWorkload struct {
	roomID      string
	posterToken string
	primedAdded atomic.Int64 // users whose messageAdded delivered a message
	primedRooms atomic.Int64 // users whose roomsChanged showed the room
}

// roomsChangedEvent is the part of a roomsChanged event loadgen reads.
type roomsChangedEvent struct {
	ID          string  `json:"id"`
	UnreadCount int     `json:"unreadCount"`
	LastMessage *texted `json:"lastMessage"`
}

// runRoom is the `room` subcommand.
func runRoom(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseWorkloadFlags("room", args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	rep, err := measureNotifications(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	if cfg.reference {
		if err := addReference(ctx, cfg, rep, stderr); err != nil {
			return fmt.Errorf("status feed reference: %w", err)
		}
	}
	if cfg.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	writeRoomTable(stdout, rep)
	return nil
}

// workload names the run.
func (r *notifRun) workload() string {
	if r.room != nil {
		return "room"
	}
	return "notifications"
}

// setUpRoom signs the poster in and finds the room.
func (r *notifRun) setUpRoom(ctx context.Context) (*roomWorkload, error) {
	a := &api{client: r.client, endpoint: r.ep.graphql}
	token, err := a.signIn(ctx, "lg-poster-"+r.runID)
	if err != nil {
		return nil, fmt.Errorf("poster sign-in: %w", err)
	}
	w := &roomWorkload{roomID: r.cfg.room, posterToken: token}
	if w.roomID != "" {
		return w, nil
	}
	var out struct {
		Rooms struct {
			Edges []struct {
				Node struct{ ID, Name string }
			}
		}
	}
	if err := a.do(ctx, generalRoomQuery, nil, &out); err != nil {
		return nil, fmt.Errorf("find the general room: %w", err)
	}
	if len(out.Rooms.Edges) == 0 {
		return nil, errors.New("no general room: pass -room")
	}
	w.roomID = out.Rooms.Edges[0].Node.ID
	return w, nil
}

// subscriptions returns user i's two subscribe payloads: the durable
// stream ("n") and the count or room list ("u"; nil with -lists=false).
func (r *notifRun) subscriptions(i int) (added, counted map[string]any) {
	if r.room == nil {
		added = map[string]any{"query": notificationAddedLive}
		if i%2 == 0 {
			added = map[string]any{"query": notificationAddedAfter, "variables": map[string]any{"a": "0"}}
		}
		return added, map[string]any{"query": unreadCountSubscribe}
	}
	added = map[string]any{"query": messageAddedLive, "variables": map[string]any{"r": r.room.roomID}}
	if i%2 == 0 {
		// The whole history first (position 0), as notifications does.
		added = map[string]any{"query": messageAddedAfter, "variables": map[string]any{"r": r.room.roomID, "a": "0"}}
	}
	if r.cfg.noLists {
		return added, nil
	}
	return added, map[string]any{"query": roomsChangedFields}
}

// mutationName names what the run posts.
func (r *notifRun) mutationName() string {
	if r.room != nil {
		return "postMessage"
	}
	return "sendNotification"
}

// post sends one broadcast or message with text and returns its position.
func (r *notifRun) post(ctx context.Context, a *api, text string) (int64, error) {
	if r.room == nil {
		var out struct {
			SendNotification struct {
				ID string `json:"id"`
			} `json:"sendNotification"`
		}
		err := a.do(ctx, broadcastMutation, map[string]any{"t": text}, &out)
		id, _ := strconv.ParseInt(out.SendNotification.ID, 10, 64)
		return id, err
	}
	var out struct {
		PostMessage struct {
			ID string `json:"id"`
		} `json:"postMessage"`
	}
	err := a.do(ctx, postMessageMut, map[string]any{"r": r.room.roomID, "t": text}, &out)
	_, pos, _ := strings.Cut(out.PostMessage.ID, ":") // "<room>:<position>"
	id, _ := strconv.ParseInt(pos, 10, 64)
	return id, err
}

// roomShown records a roomsChanged event: the time each of this run's
// messages up to the one it shows was first shown.
func (r *notifRun) roomShown(u *notifUser, f *frame, now time.Time) {
	if r.room == nil || string(f.roomID) != r.room.roomID || !f.last {
		return
	}
	r.primed(u, f.text, &u.primedChanged, &r.room.primedRooms)
	seq, _, ok := r.parseTitle(f.text)
	if !ok {
		return
	}
	if u.counts == nil {
		u.counts = make([]int64, 0, r.total)
	}
	for len(u.counts) <= seq {
		u.counts = append(u.counts, now.UnixNano())
		r.shown.Add(1)
	}
	u.last = len(u.counts)
}

// primed marks u live on one subscription (flag, counted in n) once it
// shows a message of this run.
func (r *notifRun) primed(u *notifUser, text []byte, flag *bool, n *atomic.Int64) {
	if *flag || !bytes.Contains(text, []byte(r.runID)) {
		return
	}
	*flag = true
	n.Add(1)
}

// primeRoom posts a message every 200 ms until every user whose
// connection lives has received one on both subscriptions (then both are
// live), for at most the connect timeout. A connection the server closed
// meanwhile (1013 when it could not check the session under the connect
// storm: a client would come back) is left out, and reported as lost.
// The notifications workload has nothing to prime.
func (r *notifRun) primeRoom(ctx context.Context) error {
	if r.room == nil {
		return nil
	}
	a := &api{client: r.client, endpoint: r.ep.graphql, token: r.room.posterToken}
	n := int64(len(r.users))
	deadline := time.Now().Add(r.cfg.timeout)
	for live := n; r.room.primedAdded.Load() < live || !r.cfg.noLists && r.room.primedRooms.Load() < live; live = n - r.lost.Load() {
		if time.Now().After(deadline) {
			// What the clients saw tells a dead subscription (an error, a
			// lost connection) from a live one that got nothing.
			seen := strings.Join(r.errs.list(), "; ")
			if seen == "" {
				seen = "none"
			}
			return fmt.Errorf("after %v, %d/%d users have messageAdded and %d/%d roomsChanged live; errors the clients saw: %s",
				r.cfg.timeout, r.room.primedAdded.Load(), n, r.room.primedRooms.Load(), n, seen)
		}
		if _, err := r.post(ctx, a, "prime "+r.runID); err != nil {
			return fmt.Errorf("prime the room: %w", err)
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// writeRoomTable prints the room workload's report, with the reference.
func writeRoomTable(out io.Writer, r *NotificationsReport) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "room workload\t%s, %d members (%d connected, %d errors), %d messages at %g/s (%d failed)\n",
		r.Target, r.Users, r.Connected, r.ConnectErrors, r.Broadcasts, r.Rate, r.BroadcastErrors)
	d := func(name string, x DeliveryReport) {
		fmt.Fprintf(w, "%s\tp50 %s, p99 %s, max %s; %d/%d received, %d missing, %d duplicates\n", name,
			msStr(x.Latency.P50Ms), msStr(x.Latency.P99Ms), msStr(x.Latency.MaxMs), x.Received, x.Expected, x.Missing, x.Duplicates)
	}
	d("messageAdded publish→receive", r.NotificationAdded)
	if r.Lists {
		d("roomsChanged publish→shown", r.UnreadCount)
	} else {
		fmt.Fprintf(w, "roomsChanged\tnot followed (-lists=false)\n")
	}
	if ref := r.Reference; ref != nil {
		fmt.Fprintf(w, "statusPosted reference (same size, rate)\tp50 %s, p99 %s; %d/%d connected, %d missing, server CPU %s\n",
			msStr(ref.Latency.P50Ms), msStr(ref.Latency.P99Ms), ref.Connected, ref.Conns, ref.Missing, pct(ref.Server.CPUPercent))
		fmt.Fprintf(w, "p99 ratios to the status feed\tmessageAdded %s, roomsChanged %s\n", num(r.NotificationAddedP99Ratio), num(r.UnreadCountP99Ratio))
	}
	fmt.Fprintf(w, "server CPU while posting\t%s\n", pct(r.Server.CPUPercent))
	fmt.Fprintf(w, "server RSS before / subscribed / after events\t%s / %s / %s\n", kib(r.Server.RSSBeforeKiB), kib(r.Server.RSSSubscribedKiB), kib(r.Server.RSSEndKiB))
	fmt.Fprintf(w, "server goroutines before / subscribed / after\t%s / %s / %s\n", intStr(r.Server.GoroutinesBefore), intStr(r.Server.GoroutinesSubscribed), intStr(r.Server.GoroutinesEnd))
	fmt.Fprintf(w, "database statements per message (after the first)\t%s (the first: %s)\n", num(r.StatementsPerBroadcast), num(r.StatementsFirstBroadcast))
	fmt.Fprintf(w, "slow-consumer disconnects / connections lost\t%s / %d\n", intStr(r.SlowConsumerDisconnects), r.Disconnects)
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error\t%s\n", e)
	}
	_ = w.Flush()
}
