package pki

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"time"
)

// The API server reaches each node agent's stream endpoint (container
// logs and exec) over mutually authenticated TLS:
//
//   - the agent serves a self-signed certificate it keeps in its data
//     directory (EnsureSelfSigned) and publishes the certificate's
//     fingerprint in its Node's status; the API server pins that
//     fingerprint (PinnedClientTLS) instead of trusting a CA;
//   - the API server presents a client certificate issued by the cluster
//     CA with the common name APIServerClientName (Bundle.IssueClient),
//     and the agent accepts no other (PeerServerTLS).

// APIServerClientName is the common name of the client certificate the
// API server presents to node agents.
const APIServerClientName = "paddock-apiserver"

// IssueClient returns a new client certificate with commonName signed by
// the bundle's CA, valid for a year. It is kept in memory only: the API
// server issues a fresh one at every start.
func (b *Bundle) IssueClient(commonName string) (tls.Certificate, error) {
	if b.caKey == nil {
		return tls.Certificate{}, errors.New("the bundle holds no CA key to issue client certificates with")
	}
	certPEM, keyPEM, err := issue(leafTemplate(commonName, x509.ExtKeyUsageClientAuth, time.Now(), serverValidity), b.ca, b.caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// EnsureSelfSigned returns the self-signed serving certificate kept in
// certFile and keyFile, creating both when either is missing or they do
// not form a valid pair. Its fingerprint therefore stays the same across
// restarts. It is valid for ten years: peers pin the fingerprint and do
// not check expiry.
func EnsureSelfSigned(certFile, keyFile, commonName string) (tls.Certificate, error) {
	cert, leaf, err := loadServer(certFile, keyFile)
	switch {
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return tls.Certificate{}, err
	case err == nil && leaf != nil:
		return cert, nil
	}
	certPEM, keyPEM, err := issue(leafTemplate(commonName, x509.ExtKeyUsageServerAuth, time.Now(), caValidity), nil, nil)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(certFile, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// Fingerprint returns the SHA-256 of a certificate's DER as 64 lower-case
// hex digits, the form Node.status.daemonEndpoint.certSHA256 holds.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// PinnedClientTLS returns a client configuration that presents client and
// accepts exactly the server certificate whose Fingerprint is fingerprint,
// whoever signed it.
func PinnedClientTLS(client tls.Certificate, fingerprint string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{client},
		// The chain is not checked against a CA: VerifyConnection checks
		// the pinned fingerprint instead.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the peer presented no certificate")
			}
			if got := Fingerprint(cs.PeerCertificates[0].Raw); got != fingerprint {
				return fmt.Errorf("the peer's certificate has fingerprint %s, want %s", got, fingerprint)
			}
			return nil
		},
	}
}

// PeerServerTLS returns a server configuration that presents serving and
// accepts only clients with a certificate signed by a CA in caPEM whose
// common name is commonName; every other client fails the handshake.
func PeerServerTLS(serving tls.Certificate, caPEM []byte, commonName string) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no CA certificate found in the given PEM data: pass the cluster's ca.crt")
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{serving},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error {
			// Called after the chain was verified against pool.
			if len(chains) == 0 || len(chains[0]) == 0 {
				return errors.New("no verified client certificate")
			}
			if cn := chains[0][0].Subject.CommonName; cn != commonName {
				return fmt.Errorf("client certificate %q is not %q", cn, commonName)
			}
			return nil
		},
	}, nil
}
