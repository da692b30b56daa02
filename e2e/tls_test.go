package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/internal/testenv"
)

// TestServesHTTPSAndWSS: given a certificate, the server speaks HTTPS and
// WSS itself, and live delivery works over it (the WebSocket layer's
// fallback for sockets it cannot poll directly).
func TestServesHTTPSAndWSS(t *testing.T) {
	certFile, keyFile, pool := testenv.SelfSigned(t, t.TempDir())
	s := startServer(t, map[string]string{"TLS_CERT_FILE": certFile, "TLS_KEY_FILE": keyFile})
	assert.Contains(t, s.logs.String(), "url=https://")
	require.True(t, strings.HasPrefix(s.URL, "https://"), s.URL)
	host := strings.TrimPrefix(s.URL, "https://")
	tlsConf := &tls.Config{RootCAs: pool}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf}}

	gql := func(token, query string) map[string]any {
		body, _ := json.Marshal(map[string]any{"query": query})
		req, err := http.NewRequest(http.MethodPost, "https://"+host+"/graphql", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		require.Nil(t, out["errors"])
		return out["data"].(map[string]any)
	}
	token := gql("", `mutation { signIn(name: "tls") { token } }`)["signIn"].(map[string]any)["token"].(string)

	d := websocket.Dialer{TLSClientConfig: tlsConf, Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 5 * time.Second}
	conn, _, err := d.Dial("wss://"+host+"/graphql", nil)
	require.NoError(t, err)
	defer conn.Close()
	c := &wsClient{tb: t, conn: conn}
	c.init(token)
	c.subscribe("s", `subscription { statusPosted { id text } }`, nil)
	ev := primed[event](c, "s", "statusPosted", func() { gql(token, `mutation { postStatus(text: "over tls") { id } }`) })
	assert.Equal(t, "over tls", ev.Text)

	resp, err := http.Get("http://" + host + "/healthz")
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "plain HTTP is not served on the TLS port")
}

// TestEventStreamsOverHTTP2: with a certificate, a client may negotiate
// HTTP/2, and then one connection carries many event streams (a browser
// opens at most six HTTP/1.1 connections to a host): ten subscriptions
// over one connection all get a status posted meanwhile.
func TestEventStreamsOverHTTP2(t *testing.T) {
	certFile, keyFile, pool := testenv.SelfSigned(t, t.TempDir())
	s := startServer(t, map[string]string{"TLS_CERT_FILE": certFile, "TLS_KEY_FILE": keyFile, "DEMO_FEED": "false"})
	s.logsOnFailure(t)
	var dials atomic.Int32
	transport := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	client := &http.Client{Transport: transport}
	t.Cleanup(transport.CloseIdleConnections)

	first, err := client.Get(s.URL + "/healthz")
	require.NoError(t, err)
	_ = first.Body.Close()
	require.Equal(t, 2, first.ProtoMajor, "HTTP/2 negotiated")

	var streams []*http.Response
	for range 10 {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet,
			s.URL+"/graphql?"+url.Values{"query": {`subscription { statusPosted(after: "0") { text } }`}}.Encode(), nil)
		require.NoError(t, err)
		req.Header.Set("Accept", "text/event-stream")
		resp, err := client.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { _ = resp.Body.Close() })
		require.Equal(t, 2, resp.ProtoMajor)
		streams = append(streams, resp)
	}
	post := func(query string) map[string]any {
		resp, err := client.Post(s.URL+"/graphql", "application/json", strings.NewReader(query))
		require.NoError(t, err)
		defer resp.Body.Close()
		var out struct{ Data map[string]any }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		return out.Data
	}
	signIn := post(`{"query":"mutation { signIn(name: \"h2\") { token } }"}`)["signIn"].(map[string]any)
	req, err := http.NewRequest(http.MethodPost, s.URL+"/graphql", strings.NewReader(`{"query":"mutation { postStatus(text: \"over HTTP/2\") { id } }"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+signIn["token"].(string))
	resp, err := client.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	for i, resp := range streams {
		got := make(chan string, 1)
		go func() {
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "data: ") {
					got <- sc.Text()
					return
				}
			}
			got <- ""
		}()
		select {
		case line := <-got:
			assert.Contains(t, line, "over HTTP/2", "stream %d", i)
		case <-time.After(10 * time.Second):
			t.Fatalf("stream %d: no event", i)
		}
	}
	assert.EqualValues(t, 1, dials.Load(), "every stream on one connection")
}
