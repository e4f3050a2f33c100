// Package pki makes and keeps the TLS material of a Paddock server: a private
// certificate authority and a serving certificate signed by it.
//
// EnsureServing is called at every server start. The first call creates the
// CA and the serving certificate in a directory; later calls load them, and
// reissue only the serving certificate (from the same CA) when it lacks a
// requested host name or is close to expiry, so clients that trust ca.crt
// keep working across restarts and host changes.
//
// The directory layout is:
//
//	ca.crt      CA certificate (PEM); hand this to clients
//	ca.key      CA private key (PEM, PKCS#8, mode 0600)
//	server.crt  serving certificate (PEM)
//	server.key  serving private key (PEM, PKCS#8, mode 0600)
//
// All keys are ECDSA P-256. The package does no locking: two processes that
// call EnsureServing on one directory at the same moment may both write it.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File names inside the directory given to EnsureServing.
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
)

const (
	caValidity     = 10 * 365 * 24 * time.Hour
	serverValidity = 365 * 24 * time.Hour
	// renewBefore is how close to expiry a serving certificate may get
	// before EnsureServing replaces it.
	renewBefore = 30 * 24 * time.Hour
	// backdate makes new certificates valid slightly in the past so that a
	// client whose clock lags the server's does not reject them.
	backdate = time.Hour
)

// Bundle is the TLS material of a server: its serving certificate and the CA
// that signed it. It is safe for concurrent use; it is never modified after
// EnsureServing returns it.
type Bundle struct {
	// CAPEM is the CA certificate in PEM form, as clients need it.
	CAPEM []byte
	// CAFile, CertFile and KeyFile are the paths of ca.crt, server.crt and
	// server.key, for components that take file names.
	CAFile, CertFile, KeyFile string

	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
	cert  tls.Certificate
}

// TLSConfig returns a new server TLS configuration that presents the serving
// certificate and accepts TLS 1.2 and later.
func (b *Bundle) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{b.cert},
	}
}

// CertPool returns a new pool holding only the bundle's CA, for clients (or
// client-certificate verification) that trust this server's CA.
func (b *Bundle) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(b.ca)
	return pool
}

// ClientTLSConfig returns a client TLS configuration that trusts only the CA
// certificates in caPEM (the contents of a server's ca.crt) and requires TLS
// 1.2 or later.
func ClientTLSConfig(caPEM []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no CA certificate found in the given PEM data: pass the contents of the server's ca.crt")
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    pool,
	}, nil
}

// EnsureServing returns the CA and serving certificate kept in dir, creating
// them on first use. The serving certificate covers hosts plus localhost,
// 127.0.0.1, ::1 and the machine's host name; entries that parse as IP
// addresses become IP SANs, the others DNS SANs. If the existing serving
// certificate lacks one of those names, does not chain to the CA, or expires
// within 30 days, a new one is issued by the existing CA; it keeps the names
// the old one had. The CA itself is never replaced: if only one of ca.crt and
// ca.key exists, EnsureServing fails rather than make a CA that existing
// clients do not trust.
func EnsureServing(dir string, hosts []string) (*Bundle, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pki directory: %w", err)
	}
	now := time.Now()

	ca, caKey, caPEM, err := ensureCA(dir, now)
	if err != nil {
		return nil, err
	}

	want := normalizeHosts(append(defaultHosts(), hosts...))
	certFile := filepath.Join(dir, ServerCertFile)
	keyFile := filepath.Join(dir, ServerKeyFile)

	cert, leaf, err := loadServer(certFile, keyFile)
	switch {
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, err
	case err == nil && serverOK(leaf, ca, want, now):
		// Reuse as is.
	default:
		if leaf != nil {
			// Keep the names the old certificate served so that
			// clients using them keep working.
			want = normalizeHosts(append(want, certHosts(leaf)...))
		}
		certPEM, keyPEM, err := issueServer(ca, caKey, want, now, serverValidity)
		if err != nil {
			return nil, err
		}
		// Write the key first: a crash in between leaves a new key with
		// the old certificate, which loadServer reports and the next call
		// repairs.
		if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
			return nil, err
		}
		if err := writeFileAtomic(certFile, certPEM, 0o644); err != nil {
			return nil, err
		}
		if cert, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
			return nil, fmt.Errorf("load newly issued serving certificate: %w", err)
		}
	}

	return &Bundle{
		CAPEM:    caPEM,
		CAFile:   filepath.Join(dir, CACertFile),
		CertFile: certFile,
		KeyFile:  keyFile,
		ca:       ca,
		caKey:    caKey,
		cert:     cert,
	}, nil
}

// ensureCA loads the CA from dir, or creates it if neither file exists.
func ensureCA(dir string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	certFile := filepath.Join(dir, CACertFile)
	keyFile := filepath.Join(dir, CAKeyFile)
	certPEM, certErr := os.ReadFile(certFile)
	keyPEM, keyErr := os.ReadFile(keyFile)

	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		return createCA(certFile, keyFile, now)
	case certErr != nil:
		return nil, nil, nil, fmt.Errorf("read CA certificate (restore %s or delete %s to make a new CA that clients must trust again): %w", certFile, keyFile, certErr)
	case keyErr != nil:
		return nil, nil, nil, fmt.Errorf("read CA key (restore %s or delete %s to make a new CA that clients must trust again): %w", keyFile, certFile, keyErr)
	}

	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("load CA from %s and %s: %w", certFile, keyFile, err)
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, nil, fmt.Errorf("parse CA certificate %s: %w", certFile, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, nil, fmt.Errorf("CA key %s is a %T, want an ECDSA key", keyFile, pair.PrivateKey)
	}
	if !ca.IsCA {
		return nil, nil, nil, fmt.Errorf("certificate %s is not a CA certificate", certFile)
	}
	if now.After(ca.NotAfter) {
		return nil, nil, nil, fmt.Errorf("CA certificate %s expired on %s: move %s and %s away to make a new CA, then give clients the new ca.crt", certFile, ca.NotAfter.Format(time.DateOnly), certFile, keyFile)
	}
	return ca, key, certPEM, nil
}

// createCA makes a self-signed CA and writes it to certFile and keyFile.
func createCA(certFile, keyFile string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Paddock CA", Organization: []string{"Paddock"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("parse new CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return nil, nil, nil, err
	}
	if err := writeFileAtomic(certFile, certPEM, 0o644); err != nil {
		return nil, nil, nil, err
	}
	return ca, key, certPEM, nil
}

// loadServer reads the serving key pair. It returns an error wrapping
// fs.ErrNotExist when either file is missing, and a nil error with a non-nil
// leaf when the pair loads; when the files exist but do not form a valid
// pair, it returns a nil error and a nil leaf so that the caller reissues.
func loadServer(certFile, keyFile string) (tls.Certificate, *x509.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("read serving certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("read serving key: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// Mismatched or damaged: ours to replace.
		return tls.Certificate{}, nil, nil
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return tls.Certificate{}, nil, nil
	}
	pair.Leaf = leaf
	return pair, leaf, nil
}

// serverOK reports whether leaf may be kept: it chains to ca, covers every
// host in want and stays valid for longer than renewBefore.
func serverOK(leaf, ca *x509.Certificate, want []string, now time.Time) bool {
	if leaf == nil || leaf.CheckSignatureFrom(ca) != nil {
		return false
	}
	if now.Before(leaf.NotBefore) || now.Add(renewBefore).After(leaf.NotAfter) {
		return false
	}
	have := certHosts(leaf)
	for _, h := range want {
		if !slices.Contains(have, h) {
			return false
		}
	}
	return true
}

// issueServer creates a serving key and a certificate for hosts signed by ca.
func issueServer(ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	tmpl := leafTemplate("Paddock server", x509.ExtKeyUsageServerAuth, now, validity)
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return issue(tmpl, ca, caKey)
}

// leafTemplate returns the template of an end-entity certificate.
func leafTemplate(commonName string, usage x509.ExtKeyUsage, now time.Time, validity time.Duration) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"Paddock"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{usage},
		BasicConstraintsValid: true,
	}
}

// issue creates a key and a certificate from tmpl signed by parent, or
// self-signed when parent is nil.
func issue(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key for %q: %w", tmpl.Subject.CommonName, err)
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, nil, err
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// defaultHosts are the names every serving certificate covers.
func defaultHosts() []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if name, err := os.Hostname(); err == nil && name != "" {
		hosts = append(hosts, name)
	}
	return hosts
}

// normalizeHosts canonicalizes host names and IP addresses (lower case, no
// brackets, IPv4 in dotted form), drops empty entries and duplicates, and
// sorts the result.
func normalizeHosts(hosts []string) []string {
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			h = ip.String()
		} else {
			h = strings.ToLower(strings.TrimSuffix(h, "."))
		}
		out = append(out, h)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// certHosts returns the SANs of cert in the form normalizeHosts produces.
func certHosts(cert *x509.Certificate) []string {
	hosts := slices.Clone(cert.DNSNames)
	for _, ip := range cert.IPAddresses {
		hosts = append(hosts, ip.String())
	}
	return normalizeHosts(hosts)
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate certificate serial number: %w", err)
	}
	return serial, nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// writeFileAtomic writes data to a temporary file in the target's directory
// and renames it over path, so readers never see a half-written file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
