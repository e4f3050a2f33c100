package pluginhost

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// record is what the host persists about a running plugin so that a later
// host (after a restart or upgrade of the agent) can reattach to it:
// go-plugin's ReattachConfig (pid, address, protocol and its version), the
// negotiated API version, and the AutoMTLS certificates of the
// connection, without which the plugin would refuse the new host.
type record struct {
	Kind            string    `json:"kind"`
	Name            string    `json:"name"`
	Path            string    `json:"path"`
	PID             int       `json:"pid"`
	StartTime       uint64    `json:"startTime"` // /proc/PID/stat starttime: tells the process from a later one with its pid
	Network         string    `json:"network"`
	Addr            string    `json:"addr"`
	Protocol        string    `json:"protocol"`
	ProtocolVersion int       `json:"protocolVersion"`
	APIVersion      string    `json:"apiVersion,omitempty"` // empty until the plugin took its config
	SocketDir       string    `json:"socketDir"`
	ClientCert      []byte    `json:"clientCert,omitempty"` // PEM
	ClientKey       []byte    `json:"clientKey,omitempty"`  // PEM, PKCS #8
	ServerCert      []byte    `json:"serverCert,omitempty"` // DER
	Started         time.Time `json:"started"`
	// LogOffset is how far the host had read the plugin's log when it
	// detached; nil when it did not detach cleanly.
	LogOffset *int64 `json:"logOffset,omitempty"`
}

func (h *Host) recordPath(name string) string {
	return filepath.Join(h.cfg.StateDir, "records", name+".json")
}

// readRecord returns the record of name, or nil if there is none.
func (h *Host) readRecord(name string) (*record, error) {
	b, err := os.ReadFile(h.recordPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%s: %w", h.recordPath(name), err)
	}
	return &rec, nil
}

// writeRecord replaces the record of rec.Name atomically (0600).
func (h *Host) writeRecord(rec *record) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(h.recordPath(rec.Name), append(b, '\n'))
}

func (h *Host) removeRecord(name string) error {
	if err := os.Remove(h.recordPath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// writeFileAtomic writes a 0600 file through a temporary file and a rename,
// so that a reader (or a host killed half-way) sees the old or the new
// content, never a mix.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// setTLS stores the client's AutoMTLS configuration: its certificate and
// key, and the certificate the plugin sent in its handshake line
// ("CORE|APP|NETWORK|ADDR|PROTOCOL|CERT").
func (rec *record) setTLS(cfg *tls.Config, handshake string) error {
	if cfg == nil || len(cfg.Certificates) == 0 || len(cfg.Certificates[0].Certificate) == 0 {
		return errors.New("no AutoMTLS client certificate")
	}
	parts := strings.Split(handshake, "|")
	if len(parts) < 6 || len(parts[5]) <= 50 {
		return errors.New("the plugin sent no AutoMTLS certificate in its handshake")
	}
	server, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil {
		return fmt.Errorf("the plugin's handshake certificate: %w", err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cfg.Certificates[0].PrivateKey)
	if err != nil {
		return err
	}
	rec.ClientCert = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cfg.Certificates[0].Certificate[0]})
	rec.ClientKey = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})
	rec.ServerCert = server
	return nil
}

// tlsConfig rebuilds the connection's TLS configuration the way go-plugin's
// AutoMTLS made it.
func (rec *record) tlsConfig() (*tls.Config, error) {
	cert, err := tls.X509KeyPair(rec.ClientCert, rec.ClientKey)
	if err != nil {
		return nil, fmt.Errorf("recorded client certificate: %w", err)
	}
	server, err := x509.ParseCertificate(rec.ServerCert)
	if err != nil {
		return nil, fmt.Errorf("recorded plugin certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(server)
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
		ServerName:   "localhost",
		RootCAs:      pool,
		ClientCAs:    pool,
	}, nil
}
