package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/switchboardhq/switchboard/pubsub/redispubsub/redistest"
)

// roomEntry is a roomsChanged entry with its last message.
type roomEntry struct {
	ID          string `json:"id"`
	UnreadCount int    `json:"unreadCount"`
	LastMessage *struct {
		Text string `json:"text"`
	} `json:"lastMessage"`
}

// TestRoomUnreadCountsStayRightAcrossReplicas: users watch their room
// lists in a tab on each of two replicas while messages are posted to the
// general room through both, and they read it through either, all at
// once. After a last message, every tab shows the unread count the
// database has.
func TestRoomUnreadCountsStayRightAcrossReplicas(t *testing.T) {
	a, replicas := startReplicas(t, 2, redistest.URL(t))
	general := a.generalRoom(t)
	poster := a.chatUser(t, "poster")
	var users []chatUser
	var tabs []*wsClient
	for i := range 4 {
		u := a.chatUser(t, fmt.Sprint("reader ", i))
		users = append(users, u)
		for _, r := range replicas {
			c := r.chatWS(t, u.token)
			c.subscribe("r", `subscription { roomsChanged { id unreadCount lastMessage { text } } }`, nil)
			primed[roomEntry](c, "r", "roomsChanged", func() {
				r.mustDo(t, u.token, `mutation($r: ID!) { markRoomRead(roomId: $r) { id } }`, map[string]any{"r": general.ID}, nil)
			})
			tabs = append(tabs, c)
		}
	}
	const (
		markRead = `mutation($r: ID!) { markRoomRead(roomId: $r) { id } }`
		post     = `mutation($r: ID!, $t: String!) { postMessage(roomId: $r, text: $t) { id } }`
		rounds   = 20
	)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range rounds {
				r, u := replicas[(w+i)%2], users[(w*3+i)%len(users)]
				var res gqlResponse
				switch {
				case w == 0:
					res = r.do(t, poster.token, post, map[string]any{"r": general.ID, "t": fmt.Sprint("news ", i)})
				case w == 1 && i%3 == 0:
					res = r.do(t, u.token, post, map[string]any{"r": general.ID, "t": fmt.Sprint("mine ", i)})
				default:
					res = r.do(t, u.token, markRead, map[string]any{"r": general.ID})
				}
				assert.Empty(t, res.Errors, "writer %d, round %d", w, i)
			}
		})
	}
	wg.Wait()
	a.postMessage(t, poster.token, general.ID, "last")
	for i, c := range tabs {
		u := users[i/len(replicas)]
		list := a.rooms(t, u.token, "")
		j := slices.IndexFunc(list, func(r room) bool { return r.ID == general.ID })
		if !assert.GreaterOrEqual(t, j, 0) {
			continue
		}
		want := list[j].UnreadCount
		got := until(c, "r", "roomsChanged", 10*time.Second, func(r roomEntry) bool {
			return r.ID == general.ID && r.LastMessage != nil && r.LastMessage.Text == "last"
		})
		got = lastEntry(c, general.ID, got)
		assert.Equal(t, want, got.UnreadCount, "%s's tab on replica %d", u.Name, i%len(replicas))
	}
}

// lastEntry returns the last entry of room roomID that c receives until it
// has been quiet for a second (last when none comes).
func lastEntry(c *wsClient, roomID string, last roomEntry) roomEntry {
	c.tb.Helper()
	for range 100 {
		m, err := c.tryRead(time.Second)
		if err != nil {
			return last // quiet
		}
		var p struct {
			Data struct {
				RoomsChanged roomEntry `json:"roomsChanged"`
			} `json:"data"`
		}
		if m.Type == "next" && json.Unmarshal(m.Payload, &p) == nil && p.Data.RoomsChanged.ID == roomID {
			last = p.Data.RoomsChanged
		}
	}
	return last
}
