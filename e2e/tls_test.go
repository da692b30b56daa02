package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// selfSigned writes a certificate for 127.0.0.1 and its key to dir and
// returns their paths and a pool that trusts it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "switchboard test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestServesHTTPSAndWSS: given a certificate, the server speaks HTTPS and
// WSS itself, and live delivery works over it (the WebSocket layer's
// fallback for sockets it cannot poll directly).
func TestServesHTTPSAndWSS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
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
