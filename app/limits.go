package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboardhq/switchboard/auth"
	"github.com/switchboardhq/switchboard/gqlws"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/ratelimit"
	"github.com/switchboardhq/switchboard/request"
)

// The limits across requests and connections of one caller: LIMIT_REQUESTS
// (operations per caller, HTTP and WebSocket together) and
// LIMIT_CONNS_PER_USER (WebSocket connections per signed-in user).
// LIMIT_SIGNINS is the accounts service's (accounts.Options.SignInRate).

// callerKey names the caller of ctx for LIMIT_REQUESTS: the token's user
// when there is one (an invalid token never gets this far), else the
// client's address (per /64 for IPv6, see request.AddrKey).
func callerKey(ctx context.Context) string {
	if p, ok := auth.PrincipalFrom(ctx); ok {
		return "user:" + strconv.FormatInt(p.User.ID, 10)
	}
	return "addr:" + request.ClientKey(ctx)
}

// limitRequests counts each GraphQL request over HTTP (a POST or a GET;
// one operation each) against its caller's LIMIT_REQUESTS bucket, before
// its body is read. One over the limit is answered with 429, Retry-After
// (whole seconds until the bucket has a token again) and a GraphQL error
// with RATE_LIMITED; nothing of it is parsed or run. Preflights and
// WebSocket upgrades pass uncounted: a connection's operations are counted
// one by one (admitOperation). It runs after the token is checked, so an
// invalid token is refused before it costs anything.
func limitRequests(rate *ratelimit.Keyed, log *slog.Logger, next http.Handler) http.Handler {
	if rate.Limit().Off() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method != http.MethodPost && r.Method != http.MethodGet) || isWebSocketUpgrade(r) {
			next.ServeHTTP(w, r)
			return
		}
		ctx := r.Context()
		if ok, wait := rate.Take(ctx, callerKey(ctx)); !ok {
			log.DebugContext(ctx, "rate limited", "limit", "requests", "caller", callerKey(ctx), "client", request.ClientAddr(ctx))
			w.Header().Set("Retry-After", strconv.Itoa(retrySeconds(wait)))
			writeJSON(w, http.StatusTooManyRequests, map[string]any{"errors": []map[string]any{{
				"message": tooManyOperations(rate.Limit(), wait), "extensions": map[string]string{"code": string(models.RateLimited)},
			}}})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// admitOperation is the WebSocket transport's Admit for LIMIT_REQUESTS:
// each operation a connection starts draws on the same bucket as its
// caller's HTTP requests (nil when the limit is off).
func admitOperation(rate *ratelimit.Keyed, log *slog.Logger) func(ctx context.Context) error {
	if rate.Limit().Off() {
		return nil
	}
	return func(ctx context.Context) error {
		if ok, wait := rate.Take(ctx, callerKey(ctx)); !ok {
			log.DebugContext(ctx, "rate limited", "limit", "requests", "caller", callerKey(ctx), "client", request.ClientAddr(ctx))
			return errors.New(tooManyOperations(rate.Limit(), wait))
		}
		return nil
	}
}

// tooManyOperations is the message of a refusal by LIMIT_REQUESTS.
func tooManyOperations(l ratelimit.Limit, wait time.Duration) string {
	return fmt.Sprintf("too many operations: at most %g per second, in bursts of %d; retry in %d s", l.PerSecond, l.Burst, retrySeconds(wait))
}

// retrySeconds is wait in whole seconds, rounded up, at least 1 (as
// Retry-After counts).
func retrySeconds(wait time.Duration) int {
	return max(1, int(math.Ceil(wait.Seconds())))
}

// userConns counts the WebSocket connections each signed-in user holds on
// this replica, under LIMIT_CONNS_PER_USER. (Per replica: a count of live
// sockets kept in Redis would need leases renewed by every replica and
// reclaimed from one that died; docs/design.md says why this is enough.)
type userConns struct {
	limit   int // 0: no limit
	mu      sync.Mutex
	held    map[int64]int // connections by user id; users holding none are absent
	refused atomic.Uint64
}

// newUserConns returns the counts under limit (0: no limit).
func newUserConns(limit int) *userConns {
	return &userConns{limit: limit, held: make(map[int64]int)}
}

// hold counts one more connection for the caller p (nil: anonymous, not
// counted) and returns how to give it back (once, when the connection
// ends). Beyond the limit it counts a refusal and returns a
// *gqlws.TryAgainLater: the connection is closed with 1013, which clients
// retry with backoff.
func (u *userConns) hold(p *models.Principal) (release func(), err error) {
	if p == nil || u.limit <= 0 {
		return nil, nil
	}
	id := p.User.ID
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.held[id] >= u.limit {
		u.refused.Add(1)
		return nil, &gqlws.TryAgainLater{Reason: fmt.Sprintf("Too many connections for this user (at most %d)", u.limit)}
	}
	u.held[id]++
	var once sync.Once
	return func() {
		once.Do(func() {
			u.mu.Lock()
			defer u.mu.Unlock()
			if u.held[id]--; u.held[id] <= 0 {
				delete(u.held, id)
			}
		})
	}, nil
}

// Refused reports how many connections hold refused.
func (u *userConns) Refused() uint64 { return u.refused.Load() }
