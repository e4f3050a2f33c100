package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(readFile(t, path))
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cert
}

func TestEnsureServingGenerates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	b, err := EnsureServing(dir, []string{"api.example.test", "10.1.2.3"})
	if err != nil {
		t.Fatalf("EnsureServing() = %v", err)
	}

	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("pki dir mode = %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	for name, want := range map[string]os.FileMode{CAKeyFile: 0o600, ServerKeyFile: 0o600, CACertFile: 0o644, ServerCertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("stat %s: %v", name, err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("mode of %s = %v, want %v", name, got, want)
		}
	}
	if !bytes.Equal(b.CAPEM, readFile(t, filepath.Join(dir, CACertFile))) {
		t.Error("Bundle.CAPEM differs from ca.crt")
	}

	ca := parseCert(t, filepath.Join(dir, CACertFile))
	if !ca.IsCA || ca.Subject.String() != ca.Issuer.String() {
		t.Errorf("CA: IsCA = %v, subject %q issuer %q; want a self-signed CA", ca.IsCA, ca.Subject, ca.Issuer)
	}
	if life := ca.NotAfter.Sub(ca.NotBefore); life < 9*365*24*time.Hour {
		t.Errorf("CA lifetime = %v, want about 10 years", life)
	}

	srv := parseCert(t, filepath.Join(dir, ServerCertFile))
	if err := srv.CheckSignatureFrom(ca); err != nil {
		t.Errorf("serving certificate not signed by the CA: %v", err)
	}
	if life := srv.NotAfter.Sub(srv.NotBefore); life < 364*24*time.Hour || life > 367*24*time.Hour {
		t.Errorf("serving certificate lifetime = %v, want about 1 year", life)
	}
	hostname, _ := os.Hostname()
	for _, h := range []string{"api.example.test", "10.1.2.3", "localhost", "127.0.0.1", "::1", strings.ToLower(hostname)} {
		if !slices.Contains(certHosts(srv), h) {
			t.Errorf("serving certificate SANs %v lack %q", certHosts(srv), h)
		}
	}
	if slices.Contains(srv.DNSNames, "10.1.2.3") {
		t.Error("IP address 10.1.2.3 became a DNS SAN, want an IP SAN")
	}
	if err := srv.VerifyHostname("api.example.test"); err != nil {
		t.Errorf("VerifyHostname: %v", err)
	}
}

func TestEnsureServingReuses(t *testing.T) {
	dir := t.TempDir()
	if _, err := EnsureServing(dir, []string{"a.test"}); err != nil {
		t.Fatal(err)
	}
	before := map[string][]byte{}
	for _, f := range []string{CACertFile, CAKeyFile, ServerCertFile, ServerKeyFile} {
		before[f] = readFile(t, filepath.Join(dir, f))
	}
	// Same hosts, in another spelling, and a subset: nothing changes.
	for _, hosts := range [][]string{{"a.test"}, {"A.TEST."}, nil} {
		if _, err := EnsureServing(dir, hosts); err != nil {
			t.Fatal(err)
		}
		for f, want := range before {
			if got := readFile(t, filepath.Join(dir, f)); !bytes.Equal(got, want) {
				t.Errorf("EnsureServing(%q) rewrote %s, want it reused", hosts, f)
			}
		}
	}
}

func TestEnsureServingReissuesForNewHost(t *testing.T) {
	dir := t.TempDir()
	if _, err := EnsureServing(dir, []string{"a.test"}); err != nil {
		t.Fatal(err)
	}
	caBefore := readFile(t, filepath.Join(dir, CACertFile))
	caKeyBefore := readFile(t, filepath.Join(dir, CAKeyFile))
	srvBefore := readFile(t, filepath.Join(dir, ServerCertFile))

	if _, err := EnsureServing(dir, []string{"b.test", "192.0.2.7"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(caBefore, readFile(t, filepath.Join(dir, CACertFile))) ||
		!bytes.Equal(caKeyBefore, readFile(t, filepath.Join(dir, CAKeyFile))) {
		t.Error("CA changed on reissue, want it kept")
	}
	if bytes.Equal(srvBefore, readFile(t, filepath.Join(dir, ServerCertFile))) {
		t.Fatal("serving certificate not reissued for a new host")
	}
	srv := parseCert(t, filepath.Join(dir, ServerCertFile))
	for _, h := range []string{"a.test", "b.test", "192.0.2.7"} {
		if !slices.Contains(certHosts(srv), h) {
			t.Errorf("reissued SANs %v lack %q", certHosts(srv), h)
		}
	}
	if err := srv.CheckSignatureFrom(parseCert(t, filepath.Join(dir, CACertFile))); err != nil {
		t.Errorf("reissued certificate not signed by the kept CA: %v", err)
	}
}

func TestEnsureServingReissuesNearExpiry(t *testing.T) {
	dir := t.TempDir()
	if _, err := EnsureServing(dir, nil); err != nil {
		t.Fatal(err)
	}
	ca, caKey, _, err := ensureCA(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Replace the serving certificate by one that expires in 10 days.
	certPEM, keyPEM, err := issueServer(ca, caKey, normalizeHosts(defaultHosts()), time.Now(), 10*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ServerCertFile), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ServerKeyFile), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	if _, err := EnsureServing(dir, nil); err != nil {
		t.Fatal(err)
	}
	srv := parseCert(t, filepath.Join(dir, ServerCertFile))
	if left := time.Until(srv.NotAfter); left < 300*24*time.Hour {
		t.Errorf("serving certificate expires in %v after EnsureServing, want it renewed for a year", left)
	}
}

func TestEnsureServingRefusesHalfCA(t *testing.T) {
	dir := t.TempDir()
	if _, err := EnsureServing(dir, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, CAKeyFile)); err != nil {
		t.Fatal(err)
	}
	_, err := EnsureServing(dir, nil)
	if err == nil || !strings.Contains(err.Error(), CAKeyFile) {
		t.Fatalf("EnsureServing with ca.key missing = %v, want an error naming ca.key", err)
	}
}

func TestTLSHandshake(t *testing.T) {
	b, err := EnsureServing(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	srv.TLS = b.TLSConfig()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}

	clientCfg, err := ClientTLSConfig(b.CAPEM)
	if err != nil {
		t.Fatal(err)
	}
	trusting := &http.Client{Transport: &http.Transport{TLSClientConfig: clientCfg}}
	t.Cleanup(trusting.CloseIdleConnections)
	for _, url := range []string{srv.URL, "https://localhost:" + port} {
		resp, err := trusting.Get(url)
		if err != nil {
			t.Fatalf("GET %s with the CA trusted: %v", url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "ok" {
			t.Errorf("GET %s = %q, want %q", url, body, "ok")
		}
		if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
			t.Errorf("GET %s: TLS state %+v, want TLS 1.2 or later", url, resp.TLS)
		}
	}

	// CertPool works for a client too.
	poolClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: b.CertPool()}}}
	t.Cleanup(poolClient.CloseIdleConnections)
	if resp, err := poolClient.Get(srv.URL); err != nil {
		t.Errorf("GET with CertPool(): %v", err)
	} else {
		resp.Body.Close()
	}

	// A client that does not trust the CA must fail verification.
	untrusting := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}}
	t.Cleanup(untrusting.CloseIdleConnections)
	resp, err := untrusting.Get(srv.URL)
	if err == nil {
		resp.Body.Close()
		t.Fatal("GET without the CA succeeded, want a certificate verification error")
	}
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) {
		t.Errorf("GET without the CA = %v, want a *tls.CertificateVerificationError", err)
	}
}

func TestClientTLSConfigRejectsGarbage(t *testing.T) {
	if _, err := ClientTLSConfig([]byte("not a certificate")); err == nil {
		t.Error("ClientTLSConfig(garbage) = nil error, want an error")
	}
}
