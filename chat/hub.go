package chat

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/pubsub"
)

// hub joins the chat state of every replica sharing a broker: typing
// indicators and room-list changes are published on the broker and applied
// by each replica (this one included) to its own Typing and RoomEvents, so
// a watcher sees them whichever replica the change came through. With the
// in-process broker, that is just this process.
//
// Presence is replicated the way Phoenix Presence does it, without a
// central store: each replica announces who is online through it when that
// changes, and all of it every HeartbeatInterval; the others keep each
// replica's part until PresenceTTL after its last announcement. A replica
// that stops cleanly says goodbye and its users go at once; one that dies
// takes its users offline when its part expires. A replica that starts says
// hello, and the others answer with their whole state.
type hub struct {
	Presence *Presence
	Typing   *Typing
	Rooms    *RoomEvents
	// counts, when set, are the room unread counts kept here: a room change
	// that is not a message has them read again.
	counts *roomCounts

	broker    pubsub.Broker
	log       *slog.Logger
	panics    *panics.Guard
	replica   string // this replica's id in presence announcements
	ownPrefix []byte // how its announcements begin (see isOwn)
	done      chan struct{}
	wg        sync.WaitGroup
	answer    chan struct{} // another replica said hello
}

// Presence replication timing.
const (
	// HeartbeatInterval is how often a replica announces all its presence.
	HeartbeatInterval = 5 * time.Second
	// PresenceTTL is how long a replica's presence lasts without a
	// heartbeat: a replica that dies takes its users offline within it.
	PresenceTTL = 3 * HeartbeatInterval
)

// presenceMsg is one replica's presence announcement.
type presenceMsg struct {
	Replica string                   `json:"replica"`
	Full    bool                     `json:"full,omitempty"`  // rooms not listed have none of its users
	Hello   bool                     `json:"hello,omitempty"` // it just started: answer with your state
	Bye     bool                     `json:"bye,omitempty"`   // it is stopping: forget its users
	Rooms   map[int64][]*models.User `json:"rooms,omitempty"`
}

// The broker topics of the chat state.
const (
	typingTopic   = "chat.typing"
	roomsTopic    = "chat.rooms"
	presenceTopic = "chat.presence"
)

// roomChange is a room-list change on the broker.
type roomChange struct {
	Room int64   `json:"room"`
	Only []int64 `json:"only,omitempty"`
	// Message says the change is a new message, which the unread counts
	// take from the room's stream. Any other change (a read, a new room,
	// or a change from a replica that does not say) has the counts of the
	// users named read again.
	Message bool `json:"message,omitempty"`
}

// newHub returns the chat state of this replica: typing indicators last
// typingTTL (DefaultTypingTTL when 0), users go offline leaveGrace after
// their last subscription of a room ends. Start connects it to the broker.
func newHub(broker pubsub.Broker, typingTTL, leaveGrace time.Duration, log *slog.Logger) *hub {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	id := make([]byte, 6)
	_, _ = rand.Read(id)
	replica := hex.EncodeToString(id)
	return &hub{
		Presence: NewPresence(leaveGrace, DefaultPresenceInterval), Typing: NewTyping(typingTTL), Rooms: NewRoomEvents(),
		broker: broker, log: log, replica: replica, ownPrefix: []byte(`{"replica":"` + replica + `"`),
		done: make(chan struct{}), answer: make(chan struct{}, 1),
	}
}

// Start follows the other replicas' changes until Close.
func (h *hub) Start(ctx context.Context) {
	for _, f := range []struct {
		topic  string
		apply  func([]byte)
		missed func()
	}{{typingTopic, h.applyTyping, nil}, {roomsTopic, h.applyRooms, h.missedRooms}, {presenceTopic, h.applyPresence, nil}} {
		// A broker down at start is not fatal: Follow keeps trying.
		sub, _ := h.broker.Subscribe(ctx, f.topic)
		h.wg.Add(1)
		go h.follow(ctx, f.topic, sub, f.apply, f.missed)
	}
	h.publishPresence(ctx, presenceMsg{Hello: true, Full: true, Rooms: h.Presence.Local()})
	h.wg.Add(1)
	go h.announce(ctx)
}

// Close says goodbye to the other replicas, stops following and ends every
// typing timer.
func (h *hub) Close() {
	close(h.done)
	h.wg.Wait()
	h.publishPresence(context.Background(), presenceMsg{Bye: true})
	h.Typing.Stop()
}

// announce publishes this replica's presence changes, all of it every
// HeartbeatInterval (or when another replica says hello), and forgets
// replicas that went silent. A change goes out at once, and those that
// follow within the presence interval (DefaultPresenceInterval) together
// at its end: each announcement carries the whole local list of each room
// it names, so a join storm of N users announced join by join would be
// O(N²) bytes on the broker for every replica to decode. A panic ends only
// the announcement it happened in.
func (h *hub) announce(ctx context.Context) {
	defer h.wg.Done()
	tick := time.NewTicker(HeartbeatInterval)
	defer tick.Stop()
	dirty := h.Presence.Dirty()
	var resume <-chan time.Time // the end of the interval after a change went out
	for {
		var do func()
		select {
		case <-h.done:
			return
		case <-resume:
			dirty, resume = h.Presence.Dirty(), nil
			continue
		case <-dirty:
			dirty, resume = nil, time.After(h.Presence.interval)
			do = func() { h.publishPresence(ctx, presenceMsg{Rooms: h.Presence.TakeDirty()}) }
		case <-h.answer:
			do = func() { h.publishPresence(ctx, presenceMsg{Full: true, Rooms: h.Presence.Local()}) }
		case now := <-tick.C:
			do = func() {
				h.publishPresence(ctx, presenceMsg{Full: true, Rooms: h.Presence.Local()})
				h.Presence.ForgetRemote(now, "")
			}
		}
		h.panics.Do(ctx, "chat.announce", do)
	}
}

func (h *hub) publishPresence(ctx context.Context, m presenceMsg) {
	m.Replica = h.replica
	payload, _ := json.Marshal(m)
	if err := h.broker.Publish(context.WithoutCancel(ctx), presenceTopic, payload); err != nil {
		h.log.DebugContext(ctx, "presence not announced to other replicas", "err", err)
	}
}

func (h *hub) applyPresence(payload []byte) {
	if h.isOwn(payload) {
		return // not decoded: it may list thousands of users
	}
	var m presenceMsg
	if err := json.Unmarshal(payload, &m); err != nil || m.Replica == "" {
		h.log.Warn("bad presence announcement on the broker", "err", err)
		return
	}
	if m.Replica == h.replica {
		return
	}
	if m.Bye {
		h.Presence.ForgetRemote(time.Now(), m.Replica)
		return
	}
	h.Presence.ApplyRemote(m.Replica, m.Rooms, m.Full, time.Now().Add(PresenceTTL))
	if m.Hello {
		select {
		case h.answer <- struct{}{}:
		default:
		}
	}
}

// isOwn reports whether a presence announcement is this replica's own, as
// publishPresence writes them: the replica's id is the first field.
func (h *hub) isOwn(payload []byte) bool {
	rest, ok := bytes.CutPrefix(payload, h.ownPrefix)
	return ok && len(rest) > 0 && (rest[0] == ',' || rest[0] == '}')
}

// follow applies a topic's messages, subscribing again when the broker
// drops the subscription (a Redis outage) and then calling missed (nil:
// nothing): what was missed meanwhile is ephemeral (typing), re-read
// (room lists: see missedRooms), or re-announced in full every
// HeartbeatInterval (presence).
func (h *hub) follow(ctx context.Context, topic string, sub *pubsub.Subscription, apply func([]byte), missed func()) {
	defer h.wg.Done()
	where := "chat.follower." + strings.TrimPrefix(topic, "chat.") // typing, rooms, presence
	pubsub.Follower{Broker: h.broker, Topic: topic, Apply: apply, Missed: missed, Panics: h.panics, Where: where}.Run(ctx, sub, h.done)
}

// SetTyping starts, renews or ends u's typing indicator in room on every
// replica.
func (h *hub) SetTyping(ctx context.Context, roomID int64, u *models.User, typing bool) {
	ev := h.Typing.Event(roomID, u, typing)
	payload, _ := json.Marshal(ev)
	if err := h.broker.Publish(context.WithoutCancel(ctx), typingTopic, payload); err != nil {
		h.log.Log(ctx, pubsub.AnnouncementLevel(err), "typing not announced to other replicas", "room", roomID, "err", err)
		h.Typing.Apply(ev) // at least this replica's watchers
	}
}

// EndTyping ends u's typing indicator in room on every replica, if it is
// on: a message ends its author's typing, and most authors were not shown
// typing (a client that never sends setTyping, or a renewal long expired),
// so the stop of an indicator this replica does not know of is not sent.
// An indicator whose start is still on its way from the broker then ends
// by itself, TTL after it began.
func (h *hub) EndTyping(ctx context.Context, roomID int64, u *models.User) {
	if h.Typing.Active(roomID, u.ID) {
		h.SetTyping(ctx, roomID, u, false)
	}
}

// RoomChanged tells the watchers of every replica that room changed, for
// the users only (everyone when empty), other than by a message: their
// unread counts are read again.
func (h *hub) RoomChanged(ctx context.Context, roomID int64, only ...int64) {
	h.publishRooms(ctx, roomChange{Room: roomID, Only: only})
}

// MessageAdded tells the watchers of every replica that a message changed
// room, for the users only (everyone when empty): their unread counts
// take it from the room's stream.
func (h *hub) MessageAdded(ctx context.Context, roomID int64, only ...int64) {
	h.publishRooms(ctx, roomChange{Room: roomID, Only: only, Message: true})
}

func (h *hub) publishRooms(ctx context.Context, c roomChange) {
	payload, _ := json.Marshal(c)
	if err := h.broker.Publish(context.WithoutCancel(ctx), roomsTopic, payload); err != nil {
		h.log.Log(ctx, pubsub.AnnouncementLevel(err), "room change not announced to other replicas", "room", c.Room, "err", err)
		h.roomChanged(c)
	}
}

// roomChanged applies a room change: the counts it makes stale are
// forgotten before the watchers look.
func (h *hub) roomChanged(c roomChange) {
	if !c.Message && h.counts != nil {
		h.counts.forget(c.Room, c.Only)
	}
	h.Rooms.Changed(c.Room, c.Only...)
}

// missedRooms follows a lost subscription to the room changes: reads may
// have been missed, so every counted room is counted again, for all its
// watchers at once.
func (h *hub) missedRooms() {
	if h.counts == nil {
		return
	}
	for _, id := range h.counts.forgetAll() {
		h.Rooms.Changed(id)
	}
}

func (h *hub) applyTyping(payload []byte) {
	var ev models.TypingEvent
	if err := json.Unmarshal(payload, &ev); err != nil || ev.User == nil {
		h.log.Warn("bad typing event on the broker", "err", err)
		return
	}
	h.Typing.Apply(&ev)
}

func (h *hub) applyRooms(payload []byte) {
	var c roomChange
	if err := json.Unmarshal(payload, &c); err != nil {
		h.log.Warn("bad room change on the broker", "err", err)
		return
	}
	h.roomChanged(c)
}
