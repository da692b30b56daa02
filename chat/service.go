// Package chat is the chat service: public and direct rooms, their
// messages, and the live state of the rooms (who is online in each room,
// who is typing, whose room lists changed).
//
// Messages are durable: each room's are a stream (see package stream),
// committed to the database first and announced on the broker second, so
// messageAdded keeps the after resume promise (README.md, "The delivery
// promise"). The live
// state is not: it lives in the process and is replicated over the broker
// (see hub). Each kind of it is a latest-value or best-effort stream: a
// watcher receives the current value first and then every change, and a
// slow watcher may skip intermediate values but never ends with a stale
// one.
//
// A direct room is visible to its two members only: to anyone else it is
// the same NOT_FOUND as a room that does not exist. Every use case applies
// that rule here; the reads of a room take a View, which only Room and
// Visible hand out.
package chat

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/switchboardhq/switchboard/live"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/ratelimit"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/stream"
)

// Options tune a Service. Zero values take the defaults.
type Options struct {
	// MessageRate and TypingRate limit how fast one user posts messages
	// and starts typing indicators, RoomRate how fast one user creates
	// rooms (public ones, and direct ones by opening them first); nil: no
	// limit.
	MessageRate, TypingRate, RoomRate *ratelimit.Keyed
	// TypingTTL is how long a typing indicator lasts unless renewed.
	// Default DefaultTypingTTL.
	TypingTTL time.Duration
	// LeaveGrace is how long a user stays online in a room after their
	// last subscription of it ended. Default DefaultLeaveGrace; negative:
	// at once.
	LeaveGrace time.Duration
	// Stream tunes the rooms' message streams (its Log defaults to Log).
	Stream stream.Options
	// Now is the clock of rooms, messages and typing indicators (their
	// expiry, and TypingEvery); default time.Now.
	Now func() time.Time
	// Log receives warnings.
	Log *slog.Logger
	// Panics recovers the panics of the service's goroutines (following the
	// broker, announcing presence, room-list watchers, presence and typing
	// timers); its Stream defaults to it. Nil logs them to slog.Default.
	Panics *panics.Guard
}

// Service runs the chat: rooms, messages, presence, typing and room lists.
type Service struct {
	db     *store.DB
	feed   *stream.Feed[*models.Message]
	hub    *hub
	reads  *roomReads  // room-list changes, read once for their watchers
	counts *roomCounts // the unread counts of the room lists watched here
	opts   Options
}

// New returns a Service over the rooms of db, with the live state shared on
// broker; Start connects it to the other replicas, Close stops it.
func New(db *store.DB, broker pubsub.Broker, opts Options) *Service {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	switch {
	case opts.LeaveGrace == 0:
		opts.LeaveGrace = DefaultLeaveGrace
	case opts.LeaveGrace < 0:
		opts.LeaveGrace = 0
	}
	opts.Stream.Log = cmp.Or(opts.Stream.Log, opts.Log)
	opts.Stream.Panics = cmp.Or(opts.Stream.Panics, opts.Panics)
	h := newHub(broker, opts.TypingTTL, opts.LeaveGrace, opts.Log)
	h.Typing.now = opts.Now
	h.panics, h.Typing.panics, h.Presence.panics, h.Rooms.panics = opts.Panics, opts.Panics, opts.Panics, opts.Panics
	s := &Service{
		db:   db,
		feed: stream.New(db.MessageLog(), broker, func(m *models.Message) int64 { return m.Seq }, opts.Stream),
		hub:  h,
		opts: opts,
	}
	s.reads = newRoomReads(s.readRoom)
	h.Rooms.onChange = s.reads.changed
	s.counts = newRoomCounts(func(ctx context.Context, roomID int64) (<-chan *models.Message, error) {
		return s.feed.Subscribe(ctx, models.RoomStream(roomID), nil)
	}, db.RoomUnreads, opts.Panics)
	h.counts = s.counts
	return s
}

// Start follows the other replicas' presence, typing and room-list changes
// until Close.
func (s *Service) Start(ctx context.Context) { s.hub.Start(ctx) }

// Close says goodbye to the other replicas, stops the live state and ends
// every subscription.
func (s *Service) Close() {
	s.hub.Close()
	_ = s.feed.Close() // never fails
}

// View is one room as one caller may see it: Room and Visible hand it out
// only to a caller who may see the room, and the reads and subscriptions
// of a room take it, so that none of them skips that rule.
type View struct {
	room   *models.Room
	viewer *models.User // nil: an anonymous caller
}

// Room is the room seen.
func (v *View) Room() *models.Room { return v.room }

// Room returns room id as viewer (nil: an anonymous caller) may see it: a
// public room for anyone, a direct room for its members only. Any other
// room is the same models.NotFound as a missing one.
func (s *Service) Room(ctx context.Context, viewer *models.User, id int64) (*View, error) {
	room, err := s.db.RoomFor(ctx, id, userID(viewer))
	if err != nil {
		return nil, err
	}
	return &View{room: room, viewer: viewer}, nil
}

// Visible is Room for a room already read (by a batch, say): a public room
// costs no read.
func (s *Service) Visible(ctx context.Context, room *models.Room, viewer *models.User) (*View, error) {
	if room.Direct {
		return s.Room(ctx, viewer, room.ID)
	}
	return &View{room: room, viewer: viewer}, nil
}

// userID is u's id, 0 for an anonymous caller.
func userID(u *models.User) int64 {
	if u == nil {
		return 0
	}
	return u.ID
}

// ListRooms returns a page of up to limit rooms of viewer's room list (nil:
// an anonymous caller, who sees the public rooms; see store.DB.ListRooms
// for the order) whose name contains search (already checked by
// models.RoomSearch; "": all), after the cursor of the previous page (nil:
// the first page), and the moment of the list that the next page's cursor
// keeps: every page of one list places each room as it was placed then,
// so paging lists each room once while rooms change.
func (s *Service) ListRooms(ctx context.Context, viewer *models.User, search string, after *models.RoomListCursor, limit int) ([]models.ListedRoom, time.Time, error) {
	q := store.RoomListQuery{Viewer: userID(viewer), Search: search, AsOf: s.opts.Now(), Limit: limit}
	if after != nil {
		q.AsOf, q.After = after.AsOf, &after.After
	}
	rooms, err := s.db.ListRooms(ctx, q)
	return rooms, q.AsOf, err
}

// CreateRoom creates a public room named name (trimmed, see
// models.RoomName) that me has joined, and adds it to every room list. A
// name in use, in any case, is models.BadUserInput; a refusal of the rate
// limit models.RateLimited. Neither stores anything.
func (s *Service) CreateRoom(ctx context.Context, me *models.User, name string) (*models.Room, error) {
	name, err := models.RoomName(name)
	if err != nil {
		return nil, err
	}
	if !s.opts.RoomRate.Allow(ctx, me.ID) {
		return nil, tooManyRooms()
	}
	room, err := s.db.CreateRoom(ctx, name, me.ID, s.opts.Now())
	if err != nil {
		return nil, err
	}
	s.hub.RoomChanged(ctx, room.ID)
	return room, nil
}

// tooManyRooms is the refusal of RoomRate.
func tooManyRooms() error {
	return models.Errorf(models.RateLimited, "too many new rooms; try again later")
}

// OpenDirectRoom returns the direct room of me and user otherID, creating
// it on first use (it then appears in both room lists). Opening one anew
// counts against me's room rate limit (models.RateLimited, nothing
// stored); reopening one is free. me's own id is models.BadUserInput, an
// unknown user models.NotFound.
func (s *Service) OpenDirectRoom(ctx context.Context, me *models.User, otherID int64) (*models.Room, error) {
	if otherID == me.ID {
		return nil, models.Errorf(models.BadUserInput, "userId: a direct room needs another user")
	}
	other, err := s.db.User(ctx, otherID)
	if err != nil {
		return nil, err
	}
	room, err := s.db.DirectRoom(ctx, me.ID, other.ID)
	if models.ErrorCode(err) != models.NotFound {
		return room, err
	}
	if !s.opts.RoomRate.Allow(ctx, me.ID) {
		return nil, tooManyRooms()
	}
	room, created, err := s.db.OpenDirectRoom(ctx, me, other, s.opts.Now())
	if err != nil {
		return nil, err
	}
	if created {
		s.hub.RoomChanged(ctx, room.ID, me.ID, other.ID)
	}
	return room, nil
}

// PostMessage posts text (trimmed, see models.MessageText) as me to room
// roomID, ends me's typing indicator there, announces the message to the
// room's subscribers and the change to the room lists of everyone who sees
// the room. A room me may not see is models.NotFound (see Room), invalid
// text models.BadUserInput, a refusal of the rate limit
// models.RateLimited: none of them stores anything. Once the message is
// committed, PostMessage succeeds: a broker that fails to announce it only
// delays delivery (subscribers find it in the database).
//
// key ("": none) is me's idempotency key (checked by
// models.IdempotencyKey): a PostMessage with a key me already used for a
// message within models.IdempotencyWindow returns that message, stores and
// announces nothing and is not rate limited, on every replica; the same
// key with another room or text is models.BadUserInput.
func (s *Service) PostMessage(ctx context.Context, me *models.User, roomID int64, text, key string) (*models.Message, error) {
	room, members, err := s.db.RoomToWrite(ctx, roomID, me.ID)
	if err != nil {
		return nil, err
	}
	text, err = models.MessageText(text)
	if err != nil {
		return nil, err
	}
	once, err := models.NewIdempotency(me, models.OpPostMessage, key, []any{room.ID, text})
	if err != nil {
		return nil, err
	}
	var first *models.Message
	if replayed, err := s.db.Replay(ctx, once, s.opts.Now(), &first); replayed || err != nil {
		return first, err
	}
	if !s.opts.MessageRate.Allow(ctx, me.ID) {
		return nil, models.Errorf(models.RateLimited, "too many messages; slow down")
	}
	m, replayed, err := s.db.CreateMessage(ctx, room, me, text, s.opts.Now, once)
	if err != nil || replayed {
		return m, err
	}
	s.hub.EndTyping(ctx, room.ID, me)
	if err := s.feed.Publish(context.WithoutCancel(ctx), models.RoomStream(room.ID), m); err != nil {
		// Committed already: subscribers get it from the database instead.
		s.opts.Log.Log(ctx, pubsub.AnnouncementLevel(err), "message not announced", "room", room.ID, "seq", m.Seq, "err", err)
	}
	// Everyone who sees the room (a direct room's members) has a changed
	// list entry.
	s.hub.MessageAdded(ctx, room.ID, members...)
	return m, nil
}

// SetTyping starts (or renews) or ends me's typing indicator in room
// roomID, on every replica. A room me may not see is models.NotFound; a
// start the rate limit refuses is models.RateLimited (an end never is).
func (s *Service) SetTyping(ctx context.Context, me *models.User, roomID int64, typing bool) error {
	room, _, err := s.db.RoomToWrite(ctx, roomID, me.ID)
	if err != nil {
		return err
	}
	if typing && !s.opts.TypingRate.Allow(ctx, me.ID) {
		return models.Errorf(models.RateLimited, "too many typing events; send one every few seconds")
	}
	s.hub.SetTyping(ctx, room.ID, me, typing)
	return nil
}

// MarkRoomRead records that me has read every message of room roomID, and
// updates me's room lists (in every tab). A room me may not see is
// models.NotFound.
func (s *Service) MarkRoomRead(ctx context.Context, me *models.User, roomID int64) (*models.Room, error) {
	room, err := s.db.RoomFor(ctx, roomID, me.ID)
	if err != nil {
		return nil, err
	}
	if err := s.db.MarkRoomRead(ctx, me.ID, room.ID, s.opts.Now()); err != nil {
		return nil, err
	}
	s.hub.RoomChanged(ctx, room.ID, me.ID)
	return room, nil
}

// History returns up to limit messages of v's room before position before
// (any when 0), newest first, with their authors.
func (s *Service) History(ctx context.Context, v *View, before int64, limit int) ([]*models.Message, error) {
	return s.db.MessagesBefore(ctx, v.room.ID, before, limit)
}

// Subscribe returns the messages of v's room after position after (from
// now on when nil), in order, each exactly once, until ctx ends or the
// service closes (see stream.Feed.Subscribe); while it lasts, a signed-in
// viewer is online in the room.
func (s *Service) Subscribe(ctx context.Context, v *View, after *int64) (<-chan *models.Message, error) {
	ch, err := s.feed.Subscribe(ctx, models.RoomStream(v.room.ID), after)
	if err != nil {
		return nil, err
	}
	s.join(ctx, v)
	return ch, nil
}

// join counts a signed-in viewer online in v's room while ctx lasts, or
// while the context OnlineWhile gave ctx does.
func (s *Service) join(ctx context.Context, v *View) {
	if online, set := ctx.Value(onlineKey{}).(onlineWhile); set {
		ctx = online.ctx
	}
	if v.viewer != nil && ctx != nil {
		s.hub.Presence.Join(ctx, v.room.ID, v.viewer)
	}
}

// onlineKey holds an onlineWhile in a context.
type onlineKey struct{}

// onlineWhile is the context a subscriber counts online while (nil: not
// counted).
type onlineWhile struct{ ctx context.Context }

// OnlineWhile returns ctx under which Subscribe and WatchPresence count the
// viewer online while online lasts, rather than while their own ctx does:
// a transport that stops a subscription's own execution when it joins a
// shared one passes the subscription's whole lifetime. A nil online counts
// nobody: an execution shared on behalf of subscribers who were each
// counted by their own.
func OnlineWhile(ctx, online context.Context) context.Context {
	return context.WithValue(ctx, onlineKey{}, onlineWhile{online})
}

// Online returns who is online in v's room now, in the order they came
// online.
func (s *Service) Online(v *View) []*models.User { return s.hub.Presence.Online(v.room.ID) }

// WatchPresence returns who is online in v's room: the list now, then the
// whole new list after changes (see Presence.Watch), until ctx ends; while
// it lasts, a signed-in viewer is online in the room.
func (s *Service) WatchPresence(ctx context.Context, v *View) <-chan *models.Presence {
	s.join(ctx, v)
	return s.hub.Presence.Watch(ctx, v.room.ID)
}

// WatchTyping returns the typing indicators of v's room as they start and
// end, but the viewer's own, until ctx ends (see Typing.Watch).
func (s *Service) WatchTyping(ctx context.Context, v *View) <-chan *models.TypingEvent {
	return s.hub.Typing.Watch(ctx, v.room.ID, userID(v.viewer))
}

// WatchRooms returns the entries of me's room list as they change, each
// as me sees it, with its models.RoomSeen (see RoomEvents.Watch), until ctx
// ends. A change is read once for all the watchers it concerns (see
// roomReads), in a few statements whatever their number: the unread counts
// and joined flags are kept here while me watches (see roomCounts). me's
// list is followed until life ends too (the subscriber's lifetime, which a
// shared delivery extends beyond ctx: see gqlws.SubscriberContext).
//
// Under stream.WithAudienceRecorder and a position recorder (the context
// of a shared delivery's leader) it returns the changes of every list
// followed here instead, each view once with its users (see
// RoomEvents.WatchAll); the private watcher reports itself caught up at 0
// at once, so that its subscriber joins such a delivery from its head.
func (s *Service) WatchRooms(ctx, life context.Context, me *models.User) <-chan *models.Room {
	sent, caughtUp := stream.PositionRecorder(ctx)
	if audience := stream.AudienceRecorder(ctx); audience != nil && sent != nil {
		return s.hub.Rooms.WatchAll(ctx, s.readAll, Positions{Sent: sent, CaughtUp: caughtUp, Audience: audience})
	}
	live.OnEnd(life, s.counts.watch(me.ID))
	s.hub.Rooms.Hold(life, me.ID)
	rooms := s.hub.Rooms.Watch(ctx, me.ID, func(ctx context.Context, roomID int64) (*models.Room, error) {
		return s.reads.get(ctx, roomID, me.ID)
	})
	if caughtUp != nil {
		caughtUp(0)
	}
	return rooms
}

// readAll reads roomID for users, once for all, for the watcher of every
// list (RoomEvents.WatchAll), which is the only one to read for them: a
// change of a busy room names every member, and a generation of
// roomReads for them cost a map of 8,000 users and a pass over it four
// times per message. At most readTimeout.
func (s *Service) readAll(ctx context.Context, roomID int64, users []int64) (map[int64]*models.Room, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	return s.readRoom(ctx, roomID, users)
}

// readRoom reads room roomID as each of users sees it, with its
// models.RoomSeen; users who may not see it (a direct room of others) are
// left out. The parts everyone sees alike (the row, the last message, a
// direct room's members) are read once; the unread counts and joined flags
// are those kept here, brought up to the last message read, and the ones
// not kept yet are counted in grouped statements (see roomCounts.get).
func (s *Service) readRoom(ctx context.Context, roomID int64, users []int64) (map[int64]*models.Room, error) {
	rooms, err := s.db.Rooms(ctx, []int64{roomID})
	if err != nil || rooms[roomID] == nil {
		return nil, err
	}
	room := rooms[roomID]
	var members []*models.User
	if room.Direct {
		all, err := s.db.RoomMembers(ctx, []int64{roomID})
		if err != nil {
			return nil, err
		}
		members = all[roomID]
		users = slices.DeleteFunc(slices.Clone(users), func(u int64) bool { // users may be shared (see readAll)
			return !slices.ContainsFunc(members, func(m *models.User) bool { return m.ID == u })
		})
	}
	last, err := s.db.LastMessages(ctx, []int64{roomID})
	if err != nil {
		return nil, err
	}
	var upTo int64
	if m := last[roomID]; m != nil {
		upTo = m.Seq
	}
	counts, err := s.counts.get(ctx, roomID, users, upTo)
	if err != nil {
		return nil, err
	}
	// Users who see the room alike share one copy of it: the members of a
	// public room differ only in their unread count and whether they
	// joined, so a message to 8,000 of them makes a handful of copies, not
	// 8,000.
	shared := make(map[roomView]*models.Room)
	out := make(map[int64]*models.Room, len(users))
	for i, u := range users {
		c := counts[i]
		v := viewOf(room.Direct, c.unread, room.Direct || c.joined, u)
		r := shared[v]
		if r == nil {
			copied := *room
			copied.Seen = &models.RoomSeen{Members: members, UnreadCount: v.unread, LastMessage: last[roomID], Joined: v.joined, Viewer: u}
			r = &copied
			shared[v] = r
		}
		out[u] = r
	}
	return out, nil
}

// The batch reads below serve the fields of many rooms at once, each in one
// query, whoever asks: they are for rooms already handed to their viewer
// (by RoomsFor, Room, Visible or a mutation), not a way around the rule.

// Rooms returns the rooms of ids that exist, by id (any number of ids:
// the store reads them in pieces, as the other batch reads).
func (s *Service) Rooms(ctx context.Context, ids []int64) (map[int64]*models.Room, error) {
	return s.db.Rooms(ctx, ids)
}

// Members returns the members of each direct room of roomIDs, ordered by
// id; public rooms, which have none, are left out.
func (s *Service) Members(ctx context.Context, roomIDs []int64) (map[int64][]*models.User, error) {
	return s.db.RoomMembers(ctx, roomIDs)
}

// LastMessages returns the newest message of each room of roomIDs that has
// one, with its author.
func (s *Service) LastMessages(ctx context.Context, roomIDs []int64) (map[int64]*models.Message, error) {
	return s.db.LastMessages(ctx, roomIDs)
}

// UnreadCounts returns, for each room and user of keys, how many of the
// room's messages the user has not read and did not post (keys with none
// are left out; see store.DB.UnreadCounts).
func (s *Service) UnreadCounts(ctx context.Context, keys []models.RoomUser) (map[models.RoomUser]int, error) {
	return s.db.UnreadCounts(ctx, keys)
}

// Joined returns which keys' users have joined their public room (created,
// posted to or read it); the others are left out. A direct room's members
// are in it from the start.
func (s *Service) Joined(ctx context.Context, keys []models.RoomUser) (map[models.RoomUser]bool, error) {
	return s.db.Joined(ctx, keys)
}
