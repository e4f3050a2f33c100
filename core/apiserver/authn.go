package apiserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/core/store"
)

// Bearer tokens are "ID.SECRET": ID names the Token object, SECRET is
// random and only its SHA-256 is stored. The secrets are 160 random bits,
// so a fast hash is as safe as a slow one and keeps authentication cheap.
const (
	tokenIDLen     = 8
	tokenSecretLen = 32
	tokenAlphabet  = "abcdefghijklmnopqrstuvwxyz0123456789"
)

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = tokenAlphabet[int(b[i])%len(tokenAlphabet)]
	}
	return string(b)
}

// NewTokenSecret returns a fresh token id and secret.
func NewTokenSecret() (id, secret string) {
	return randomString(tokenIDLen), randomString(tokenSecretLen)
}

// HashSecret returns the stored form of a token secret.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// authenticator maps bearer tokens to users. It keeps every Token in memory,
// fed by a watch, so that a request costs no etcd read; a token created a
// moment ago and not yet seen by the watch is read from the store.
type authenticator struct {
	store *store.Store
	log   *slog.Logger
	now   func() time.Time

	mu     sync.RWMutex
	tokens map[string]*api.Token // by id
	synced bool
}

func newAuthenticator(s *store.Store, log *slog.Logger) *authenticator {
	return &authenticator{store: s, log: log, now: time.Now, tokens: map[string]*api.Token{}}
}

var tokenKind, _ = api.KindFor("tokens")

// run keeps the token cache current until ctx ends.
func (a *authenticator) run(ctx context.Context) {
	for ctx.Err() == nil {
		if err := a.sync(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("token cache watch ended; relisting", "err", err)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
		}
	}
}

func (a *authenticator) sync(ctx context.Context) error {
	list, err := a.store.List(ctx, tokenKind, "", store.ListOptions{})
	if err != nil {
		return err
	}
	fresh := make(map[string]*api.Token, len(list.Items))
	for _, o := range list.Items {
		t := o.(*api.Token)
		fresh[t.Metadata.Name] = t
	}
	rv, _ := store.ParseResourceVersion(list.Metadata.ResourceVersion)
	ch, err := a.store.Watch(ctx, tokenKind, "", store.WatchOptions{ResourceVersion: rv})
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.tokens, a.synced = fresh, true
	a.mu.Unlock()
	for ev := range ch {
		switch ev.Type {
		case api.Added, api.Modified:
			t := ev.Object.(*api.Token)
			a.mu.Lock()
			a.tokens[t.Metadata.Name] = t
			a.mu.Unlock()
		case api.Deleted:
			a.mu.Lock()
			delete(a.tokens, ev.Object.GetObjectMeta().Name)
			a.mu.Unlock()
		case api.Error:
			return errdefs.New(errdefs.ErrGone, ev.Object.(*api.Status).Message)
		}
	}
	return ctx.Err()
}

// authenticate returns the user a request's bearer token belongs to.
func (a *authenticator) authenticate(r *http.Request) (*User, error) {
	h := r.Header.Get("Authorization")
	bearer, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || bearer == "" {
		return nil, errdefs.New(errdefs.ErrUnauthenticated, "no bearer token: send Authorization: Bearer TOKEN (paddock token create makes one)")
	}
	id, secret, ok := strings.Cut(strings.TrimSpace(bearer), ".")
	if !ok || len(id) != tokenIDLen || len(secret) != tokenSecretLen {
		return nil, errInvalidToken
	}
	a.mu.RLock()
	t, found := a.tokens[id]
	a.mu.RUnlock()
	if !found {
		o, err := a.store.Get(r.Context(), tokenKind, "", id)
		if errdefs.IsNotFound(err) {
			return nil, errInvalidToken
		}
		if err != nil {
			return nil, err
		}
		t = o.(*api.Token)
	}
	want := HashSecret(secret)
	if subtle.ConstantTimeCompare([]byte(want), []byte(t.Status.SecretHash)) != 1 {
		return nil, errInvalidToken
	}
	if exp := t.Spec.ExpirationTimestamp; exp != nil && a.now().After(exp.Time) {
		return nil, errdefs.New(errdefs.ErrUnauthenticated, "the token expired at "+exp.Format(time.RFC3339)+": ask for a new one")
	}
	return &User{Name: "token:" + id, Role: t.Spec.Role, Tenant: t.Spec.Tenant, Node: t.Spec.Node}, nil
}

var errInvalidToken = errdefs.New(errdefs.ErrUnauthenticated, "invalid or revoked token")
