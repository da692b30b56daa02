package chat

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/pubsub"
)

// Hub joins the chat state of every replica sharing a broker: typing
// indicators and room-list changes are published on the broker and applied
// by each replica (this one included) to its own Typing and RoomEvents, so
// a watcher sees them whichever replica the change came through. With the
// in-process broker, that is just this process.
type Hub struct {
	Presence *Presence
	Typing   *Typing
	Rooms    *RoomEvents

	broker pubsub.Broker
	log    *slog.Logger
	done   chan struct{}
	wg     sync.WaitGroup
}

// The broker topics of the chat state.
const (
	typingTopic = "chat.typing"
	roomsTopic  = "chat.rooms"
)

// roomChange is a room-list change on the broker.
type roomChange struct {
	Room int64   `json:"room"`
	Only []int64 `json:"only,omitempty"`
}

// NewHub returns the chat state of this replica: typing indicators last
// typingTTL (DefaultTypingTTL when 0), users go offline leaveGrace after
// their last subscription of a room ends. Start connects it to the broker.
func NewHub(broker pubsub.Broker, typingTTL, leaveGrace time.Duration, log *slog.Logger) *Hub {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Hub{
		Presence: NewPresence(leaveGrace), Typing: NewTyping(typingTTL), Rooms: NewRoomEvents(),
		broker: broker, log: log, done: make(chan struct{}),
	}
}

// Start follows the other replicas' changes until Close.
func (h *Hub) Start(ctx context.Context) error {
	for _, f := range []struct {
		topic string
		apply func([]byte)
	}{{typingTopic, h.applyTyping}, {roomsTopic, h.applyRooms}} {
		sub, err := h.broker.Subscribe(ctx, f.topic)
		if err != nil {
			return err
		}
		h.wg.Add(1)
		go h.follow(ctx, f.topic, sub, f.apply)
	}
	return nil
}

// Close stops following and ends every typing timer.
func (h *Hub) Close() {
	close(h.done)
	h.wg.Wait()
	h.Typing.Stop()
}

// follow applies a topic's messages, subscribing again when the broker
// drops the subscription (a Redis outage): what was missed meanwhile is
// ephemeral (typing) or re-read at the next change (room lists).
func (h *Hub) follow(ctx context.Context, topic string, sub *pubsub.Subscription, apply func([]byte)) {
	defer h.wg.Done()
	for {
		select {
		case <-h.done:
			sub.Close()
			return
		case payload, ok := <-sub.C():
			if ok {
				apply(payload)
				continue
			}
			for {
				var err error
				if sub, err = h.broker.Subscribe(ctx, topic); err == nil {
					break
				}
				select {
				case <-h.done:
					return
				case <-time.After(time.Second):
				}
			}
		}
	}
}

// SetTyping starts, renews or ends u's typing indicator in room on every
// replica.
func (h *Hub) SetTyping(ctx context.Context, roomID int64, u *models.User, typing bool) {
	ev := h.Typing.Event(roomID, u, typing)
	payload, _ := json.Marshal(ev)
	if err := h.broker.Publish(context.WithoutCancel(ctx), typingTopic, payload); err != nil {
		h.log.WarnContext(ctx, "typing not announced to other replicas", "room", roomID, "err", err)
		h.Typing.Apply(ev) // at least this replica's watchers
	}
}

// RoomChanged tells the watchers of every replica that room changed, for
// the users only (everyone when empty).
func (h *Hub) RoomChanged(ctx context.Context, roomID int64, only ...int64) {
	payload, _ := json.Marshal(roomChange{Room: roomID, Only: only})
	if err := h.broker.Publish(context.WithoutCancel(ctx), roomsTopic, payload); err != nil {
		h.log.WarnContext(ctx, "room change not announced to other replicas", "room", roomID, "err", err)
		h.Rooms.Changed(roomID, only...)
	}
}

func (h *Hub) applyTyping(payload []byte) {
	var ev models.TypingEvent
	if err := json.Unmarshal(payload, &ev); err != nil || ev.User == nil {
		h.log.Warn("bad typing event on the broker", "err", err)
		return
	}
	h.Typing.Apply(&ev)
}

func (h *Hub) applyRooms(payload []byte) {
	var c roomChange
	if err := json.Unmarshal(payload, &c); err != nil {
		h.log.Warn("bad room change on the broker", "err", err)
		return
	}
	h.Rooms.Changed(c.Room, c.Only...)
}
