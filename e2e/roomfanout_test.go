package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMessageAndRoomListEntryInOneWrite: a member of a busy room who
// follows both its messages and their room list gets a message and the
// room-list entry it moves in one write (gqlws Options.Followers, as
// app/routes.go sets it): the server process makes about one write system
// call per member for a message, not two.
func TestMessageAndRoomListEntryInOneWrite(t *testing.T) {
	if _, err := os.Stat("/proc/self/io"); err != nil {
		t.Skip("needs /proc/<pid>/io to count the server's write system calls")
	}
	const members = 1100 // a fan-out of more than 2×512 is split over two processors, and takes turns
	srv := startProcess(t, map[string]string{
		"GOMAXPROCS": "2", "DEMO_FEED": "false", "WS_KEEPALIVE": "5m",
		"LIMIT_REQUESTS": "0", "LIMIT_SIGNINS": "0", "LIMIT_CONNS_PER_USER": "0", "LIMIT_CONNS_PER_ADDR": "0", "LIMIT_MESSAGES": "0",
		// The room lists of an instrumented build on a busy machine may take
		// longer than the 50 ms a message waits for them by default.
		"SWITCHBOARD_TEST_FOLLOW_WAIT": "5s",
	})
	users := make([]chatUser, 8)
	for i := range users {
		users[i] = srv.chatUser(t, fmt.Sprintf("member %d", i))
	}
	poster := srv.chatUser(t, "poster")
	general := srv.generalRoom(t)

	clients := make([]*roomMember, members)
	for i := range clients {
		c := srv.chatWS(t, users[i%len(users)].token)
		c.subscribe("m", `subscription($r: ID!) { messageAdded(roomId: $r) { id text } }`, map[string]any{"r": general.ID})
		c.subscribe("r", `subscription { roomsChanged { id unreadCount lastMessage { id text } } }`, nil)
		clients[i] = readRoomMember(c)
	}
	waitMetric(t, srv, `switchboard_subscriptions{field="messageAdded"}`, members)
	waitMetric(t, srv, `switchboard_subscriptions{field="roomsChanged"}`, members)

	// Every member is live on both subscriptions once each has shown a
	// message posted after it subscribed.
	for k := 1; !allShown(clients, "prime"); k++ {
		require.LessOrEqual(t, k, 10, "members live on both subscriptions: %d of %d", shownBy(clients, "prime"), members)
		srv.postMessage(t, poster.token, general.ID, "prime "+strconv.Itoa(k))
		time.Sleep(time.Second)
	}
	time.Sleep(500 * time.Millisecond) // what the primes moved has gone out

	// Several messages, since without the wait some of them happen to go
	// out with their room-list entries anyway: when the entries are ready
	// before the message's fan-out ends (here, where every member has the
	// same view of the room, they often are).
	const messages = 10
	var writes []int
	for k := range messages {
		text := fmt.Sprintf("measured %d", k)
		before := writeSyscallsOf(t, srv.pid)
		srv.postMessage(t, poster.token, general.ID, text)
		require.Eventually(t, func() bool { return allShown(clients, text) }, 60*time.Second, 10*time.Millisecond,
			"every member has the message and its room-list entry: %d of %d", shownBy(clients, text), members)
		n := writeSyscallsOf(t, srv.pid) - before
		t.Logf("%d write system calls for %q to %d members", n, text, members)
		writes = append(writes, n)
		for i, c := range clients {
			require.ElementsMatch(t, []string{"m", "r"}, c.framesOf(text), "member %d: the message and its room-list entry, once each", i)
		}
	}
	// One write per member is members writes a message, and the
	// database's and the poster's, 15 or so; now and then a message costs
	// a hundred or two more (the database's own housekeeping, seen with the
	// wait and without), so the median message is what counts. Without the
	// wait it costs 70 to 170 more: a message whose entries are ready after
	// its fan-out ended is written twice to everyone, one whose entries
	// come during it to some.
	slices.Sort(writes)
	assert.Less(t, writes[messages/2], members+members/30, "one write for a message and its room-list entry, not one each: %v", writes)
}

// roomMember reads what one connection of TestMessageAndRoomListEntryInOneWrite
// receives: which operation showed each message, in order.
type roomMember struct {
	mu    sync.Mutex
	shown []string // "m text" or "r text", in the order received
}

// readRoomMember reads c's frames until it closes.
func readRoomMember(c *wsClient) *roomMember {
	m := &roomMember{}
	_ = c.conn.SetReadDeadline(time.Time{}) // init's is long past when the test ends, under -race
	go func() {
		for {
			_, data, err := c.conn.ReadMessage()
			if err != nil {
				return
			}
			var frame struct {
				ID      string `json:"id"`
				Payload struct {
					Data struct {
						MessageAdded *struct{ Text string } `json:"messageAdded"`
						RoomsChanged *struct {
							LastMessage *struct{ Text string } `json:"lastMessage"`
						} `json:"roomsChanged"`
					} `json:"data"`
				} `json:"payload"`
			}
			if json.Unmarshal(data, &frame) != nil {
				continue
			}
			text := ""
			switch d := frame.Payload.Data; {
			case d.MessageAdded != nil:
				text = d.MessageAdded.Text
			case d.RoomsChanged != nil && d.RoomsChanged.LastMessage != nil:
				text = d.RoomsChanged.LastMessage.Text
			default:
				continue
			}
			m.mu.Lock()
			m.shown = append(m.shown, frame.ID+" "+text)
			m.mu.Unlock()
		}
	}()
	return m
}

// framesOf returns the operations that showed messages whose text starts
// with prefix, in the order received.
func (m *roomMember) framesOf(prefix string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ops []string
	for _, s := range m.shown {
		op, text, _ := strings.Cut(s, " ")
		if strings.HasPrefix(text, prefix) {
			ops = append(ops, op)
		}
	}
	return ops
}

// shownBy counts the members that have a message whose text starts with
// prefix on both subscriptions.
func shownBy(members []*roomMember, prefix string) int {
	n := 0
	for _, m := range members {
		if ops := m.framesOf(prefix); slices.Contains(ops, "m") && slices.Contains(ops, "r") {
			n++
		}
	}
	return n
}

func allShown(members []*roomMember, prefix string) bool {
	return shownBy(members, prefix) == len(members)
}

// writeSyscallsOf reads the write system calls process pid has made.
func writeSyscallsOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	require.NoError(t, err)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, err := strconv.Atoi(v)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatalf("no syscw in /proc/%d/io", pid)
	return 0
}
