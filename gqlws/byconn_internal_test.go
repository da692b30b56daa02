package gqlws

import (
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// turnOf returns, for a turn over conns connections, the jobs of a shared
// turn as a message and the room lists it moved give: an event for every
// connection in one order, a follower for every connection in another,
// and a second follower for some (a connection with two subscriptions).
func turnOf(conns int, seed uint64) (batch []*fanOutJob, cs []*conn) {
	cs = make([]*conn, conns)
	for i := range cs {
		cs[i] = &conn{}
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	events := &fanOutJob{class: eventTurn, result: eventFrame}
	for _, c := range cs {
		events.members = append(events.members, &operation{conn: c, id: "e"})
	}
	counts := &fanOutJob{class: latestTurn, result: countFrame}
	for _, i := range rng.Perm(conns) {
		counts.members = append(counts.members, &operation{conn: cs[i], id: "c"})
		if i%7 == 0 {
			counts.members = append(counts.members, &operation{conn: cs[i], id: "c2"})
		}
	}
	return []*fanOutJob{events, counts}, cs
}

// TestByConnGroupsEachConnectionsFrames: a shared turn's frames are split
// over one part per processor with each connection's frames together, in
// one part, in the batch's order (the event's, then the follower's in its
// members' order), and none lost.
func TestByConnGroupsEachConnectionsFrames(t *testing.T) {
	procs := runtime.GOMAXPROCS(2)
	t.Cleanup(func() { runtime.GOMAXPROCS(procs) })
	const conns = 3000
	batch, _ := turnOf(conns, 7)
	want := map[*conn][]string{} // each connection's frames, in batch order
	total := 0
	for _, job := range batch {
		for _, m := range job.members {
			want[m.conn] = append(want[m.conn], m.id)
			total++
		}
	}
	for range 2 { // the scratch of an earlier turn does not leak into the next
		parts := byConn(batch, &turnScratch{})
		require.Len(t, parts, 2)
		got := map[*conn][]string{}
		partOf := map[*conn]int{}
		n := 0
		for p, part := range parts {
			assert.InDelta(t, total/2, len(part), 10, "the parts are about even")
			for i, f := range part {
				if q, seen := partOf[f.conn]; seen {
					assert.Equal(t, p, q, "a connection's frames are in one part")
					assert.Same(t, part[i-1].conn, f.conn, "next to each other")
				}
				partOf[f.conn] = p
				assert.Same(t, f.conn, f.frame.op.conn)
				got[f.conn] = append(got[f.conn], f.frame.op.id)
				n++
			}
		}
		assert.Equal(t, total, n, "every frame once")
		assert.Equal(t, want, got, "each connection's frames in the batch's order")
	}
}

// BenchmarkByConn is the cost of ordering a shared turn of a message and
// its room-list entries for 8,000 members, before the first write.
func BenchmarkByConn(b *testing.B) {
	procs := runtime.GOMAXPROCS(2)
	b.Cleanup(func() { runtime.GOMAXPROCS(procs) })
	batch, _ := turnOf(8000, 7)
	var scratch turnScratch
	b.ReportAllocs()
	for b.Loop() {
		byConn(batch, &scratch)
	}
}
