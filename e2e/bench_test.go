package e2e

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// BenchmarkFanOut measures one status delivered to N subscribers of the same
// subscription over real WebSocket connections on loopback: one op is one
// postStatus and its arrival at every subscriber. ns/delivery is the server's
// and the clients' time per delivered event (both run on this machine).
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			// b.N statuses from one user; n subscribers from one address.
			s := startServer(b, map[string]string{"LOG_LEVEL": "info", "LIMIT_STATUSES": "0", "LIMIT_REQUESTS": "0"})
			token := s.signIn(b, "bench")
			head := s.post(b, token, "head").ID
			conns := make([]*websocket.Conn, n)
			d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}}
			for i := range conns {
				c, _, err := d.Dial(s.WS(), nil)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { c.Close() })
				_ = c.WriteJSON(map[string]any{"type": "connection_init"})
				_ = c.WriteJSON(map[string]any{"type": "subscribe", "id": "1", "payload": map[string]any{
					"query":     `subscription($a: ID) { statusPosted(after: $a) { id text } }`,
					"variables": map[string]any{"a": head},
				}})
				var ack wsMessage
				if err := c.ReadJSON(&ack); err != nil || ack.Type != "connection_ack" {
					b.Fatalf("no ack: %v %v", ack, err)
				}
				conns[i] = c
			}
			// Every subscriber reads in its own goroutine and reports each event.
			got := make(chan int, n)
			var readers sync.WaitGroup
			for _, c := range conns {
				readers.Go(func() {
					for {
						_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
						var m wsMessage
						if err := c.ReadJSON(&m); err != nil {
							return
						}
						if m.Type == "next" {
							got <- 1
						}
					}
				})
			}
			b.Cleanup(func() {
				for _, c := range conns {
					c.Close()
				}
				readers.Wait()
			})
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s.post(b, token, "bench "+strconv.Itoa(i))
				for range n {
					select {
					case <-got:
					case <-time.After(30 * time.Second):
						b.Fatal("a delivery did not arrive within 30 s")
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}

// BenchmarkEncodeDelivery compares the per-subscriber cost of encoding one
// result the private way (marshal the response and build the frame for each
// subscriber) with the shared way (marshal once; per subscriber only the
// frame around the shared payload).
func BenchmarkEncodeDelivery(b *testing.B) {
	resp := map[string]any{"data": map[string]any{"statusPosted": map[string]any{
		"id": "12345", "text": "Deploy finished, all green", "createdAt": "2026-11-23T13:05:00.123Z",
		"author": map[string]any{"id": "42", "name": "Ada"},
	}}}
	b.Run("private", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			payload, _ := json.Marshal(resp)
			frame := append(append([]byte(`{"type":"next","id":"1","payload":`), payload...), '}')
			_ = frame
		}
	})
	b.Run("shared", func(b *testing.B) {
		payload, _ := json.Marshal(resp)
		buf := make([]byte, 0, 512)
		b.ReportAllocs()
		for b.Loop() {
			buf = append(buf[:0], `{"type":"next","id":`...)
			buf = append(buf, `"1"`...)
			buf = append(buf, `,"payload":`...)
			buf = append(buf, payload...)
			buf = append(buf, '}')
		}
	})
}
