// Package faultproxy is a TCP proxy for tests that put a network fault
// between a client and a real server (MariaDB, PostgreSQL, Redis): it
// forwards, stops forwarding (a partition, or a frozen server: connections
// stay open and bytes go nowhere), adds latency, or resets every
// connection. Faults apply to the connections already open and to the
// ones opened later.
package faultproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy forwards connections made to Addr to an upstream address. Tests
// create one with Start; it closes when the test ends.
type Proxy struct {
	ln       net.Listener
	upstream string

	mu      sync.Mutex
	stalled bool          // bytes are held, not forwarded
	resume  chan struct{} // closed when a stall ends
	latency time.Duration // added before each chunk is forwarded
	tap     func(client net.Conn, b []byte)
	conns   map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// Start listens on a free loopback port and forwards to upstream
// (host:port) until the test ends.
func Start(tb testing.TB, upstream string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("faultproxy: %v", err)
	}
	p := &Proxy{ln: ln, upstream: upstream, resume: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	close(p.resume) // not stalled
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.Close)
	return p
}

// Addr is the proxy's address (host:port), to give the client instead of
// the upstream's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Stall stops forwarding: connections stay open, new ones are accepted,
// and every byte is held until Forward. This is what a network partition
// or a server stopped with SIGSTOP looks like to a client.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stalled {
		p.stalled = true
		p.resume = make(chan struct{})
	}
}

// Forward ends a stall (held bytes go through) and removes the latency.
func (p *Proxy) Forward() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = 0
	if p.stalled {
		p.stalled = false
		close(p.resume)
	}
}

// SetLatency delays every chunk of bytes by d, in both directions.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

// Tap calls f with each chunk of bytes a client sends, in order for each
// connection (client), before it is forwarded; nil stops.
func (p *Proxy) Tap(f func(client net.Conn, b []byte)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tap = f
}

// Reset closes every open connection (the client sees its connections
// drop); new ones are forwarded as before.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	if p.stalled {
		p.stalled = false
		close(p.resume)
	}
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	p.wg.Wait()
}

// accept forwards each accepted connection until the proxy closes.
func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(client)
	}
}

// serve connects client to the upstream and pipes both ways.
func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	if !p.track(client) {
		return
	}
	defer p.untrack(client)
	if !p.wait() {
		return
	}
	server, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		return
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	done := make(chan struct{}, 2)
	go func() { p.pipe(server, client, true); done <- struct{}{} }()
	go func() { p.pipe(client, server, false); done <- struct{}{} }()
	<-done // one side ended: end both
	_ = client.Close()
	_ = server.Close()
	<-done
}

// pipe copies src to dst, chunk by chunk, each after any stall and latency;
// what a client sends (fromClient) goes past the tap first.
func (p *Proxy) pipe(dst, src net.Conn, fromClient bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.wait() {
				return
			}
			p.mu.Lock()
			tap := p.tap
			p.mu.Unlock()
			if fromClient && tap != nil {
				tap(src, buf[:n])
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			if cw, ok := dst.(*net.TCPConn); ok {
				_ = cw.CloseWrite()
			}
			return
		}
	}
}

// wait holds a chunk through a stall and its latency; false once the proxy
// closes.
func (p *Proxy) wait() bool {
	p.mu.Lock()
	resume, latency, closed := p.resume, p.latency, p.closed
	p.mu.Unlock()
	if closed {
		return false
	}
	<-resume
	if latency > 0 {
		time.Sleep(latency)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.closed
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	_ = c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}
