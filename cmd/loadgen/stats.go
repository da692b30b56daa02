package main

import (
	"fmt"
	"math"
	"math/bits"
	"strings"
	"sync/atomic"
	"time"
)

// Latency histogram geometry: 100 µs buckets up to 10 s, then one overflow
// bucket. Percentiles are reported as the upper edge of their bucket (capped
// at the exact maximum), so they are at most 100 µs pessimistic.
const (
	bucketWidth = 100 * time.Microsecond
	numBuckets  = int(10 * time.Second / bucketWidth)
)

// histogram counts durations. It is safe for concurrent use: every reader
// goroutine records into the same one with atomic adds (about 400 KB each,
// independent of the number of connections).
type histogram struct {
	buckets [numBuckets + 1]atomic.Uint32
	count   atomic.Int64
	max     atomic.Int64
}

func newHistogram() *histogram { return new(histogram) }

// record adds one duration; negative ones (clock steps) count as zero.
func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	i := int(d / bucketWidth)
	if i > numBuckets {
		i = numBuckets
	}
	h.buckets[i].Add(1)
	h.count.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// merge adds o's counts to h. Neither may be recorded into meanwhile.
func (h *histogram) merge(o *histogram) {
	for i := range o.buckets {
		if n := o.buckets[i].Load(); n != 0 {
			h.buckets[i].Add(n)
		}
	}
	h.count.Add(o.count.Load())
	if m := o.max.Load(); m > h.max.Load() {
		h.max.Store(m)
	}
}

// quantile returns the q-quantile (0 < q ≤ 1), or 0 when h is empty.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	maxD := time.Duration(h.max.Load())
	var seen int64
	for i := range h.buckets {
		seen += int64(h.buckets[i].Load())
		if seen >= rank {
			if i == numBuckets {
				return maxD
			}
			return min(time.Duration(i+1)*bucketWidth, maxD)
		}
	}
	return maxD
}

// Latency is a latency summary in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	P50Ms float64 `json:"p50Ms"`
	P90Ms float64 `json:"p90Ms"`
	P99Ms float64 `json:"p99Ms"`
	MaxMs float64 `json:"maxMs"`
}

func (h *histogram) summary() Latency {
	return Latency{
		Count: h.count.Load(),
		P50Ms: ms(h.quantile(0.50)),
		P90Ms: ms(h.quantile(0.90)),
		P99Ms: ms(h.quantile(0.99)),
		MaxMs: ms(time.Duration(h.max.Load())),
	}
}

// ms converts a duration to milliseconds rounded to the microsecond.
func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// bitset is a fixed-size set of small non-negative integers.
type bitset []uint64

func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

func (b bitset) has(i int) bool { return b[i/64]&(1<<(uint(i)%64)) != 0 }

func (b bitset) set(i int) { b[i/64] |= 1 << (uint(i) % 64) }

// countMissing counts the members of want in [lo, hi) that are not in got.
func countMissing(want, got bitset, lo, hi int) int64 {
	var n int64
	for w := lo / 64; w*64 < hi; w++ {
		mask := ^uint64(0)
		if w*64 < lo {
			mask &= ^uint64(0) << (uint(lo) % 64)
		}
		if (w+1)*64 > hi {
			mask &= ^uint64(0) >> (64 - uint(hi)%64)
		}
		n += int64(bits.OnesCount64(want[w] &^ got[w] & mask))
	}
	return n
}

// verdict is the ramp's stopping rule for one step: it passes when every
// post succeeded, every subscriber got every post exactly once, and the p99
// publish→receive latency is at most maxP99.
func verdict(posts, postErrors, missing, duplicates int64, p99, maxP99 time.Duration) (ok bool, reason string) {
	var why []string
	if posts == 0 {
		why = append(why, "no successful posts")
	}
	if postErrors > 0 {
		why = append(why, fmt.Sprintf("%d post errors", postErrors))
	}
	if missing > 0 {
		why = append(why, fmt.Sprintf("%d missing", missing))
	}
	if duplicates > 0 {
		why = append(why, fmt.Sprintf("%d duplicates", duplicates))
	}
	if p99 > maxP99 {
		why = append(why, fmt.Sprintf("p99 %v > %v", p99, maxP99))
	}
	return len(why) == 0, strings.Join(why, ", ")
}
