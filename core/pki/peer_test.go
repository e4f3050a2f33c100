package pki

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

func TestEnsureSelfSigned(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "s.crt"), filepath.Join(dir, "s.key")
	a, err := EnsureSelfSigned(certFile, keyFile, "paddock-agent")
	if err != nil {
		t.Fatal(err)
	}
	b, err := EnsureSelfSigned(certFile, keyFile, "paddock-agent")
	if err != nil {
		t.Fatal(err)
	}
	fa, fb := Fingerprint(a.Certificate[0]), Fingerprint(b.Certificate[0])
	if fa != fb || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(fa) {
		t.Errorf("fingerprints %s then %s, want one and the same 64 hex digits", fa, fb)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	// A damaged pair is replaced by a new certificate.
	if err := os.WriteFile(keyFile, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := EnsureSelfSigned(certFile, keyFile, "paddock-agent")
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(c.Certificate[0]) == fa {
		t.Error("a damaged pair was kept")
	}
}

func TestIssueClient(t *testing.T) {
	b, err := EnsureServing(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := b.IssueClient(APIServerClientName)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != APIServerClientName {
		t.Errorf("common name %q, want %q", leaf.Subject.CommonName, APIServerClientName)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: b.CertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate does not verify as a client of the CA: %v", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: b.CertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("client certificate verifies as a server certificate")
	}
	if _, err := (&Bundle{}).IssueClient("x"); err == nil {
		t.Error("IssueClient without a CA key succeeded")
	}
}
