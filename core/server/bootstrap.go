package server

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/apiserver"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/core/store"
)

// BuiltinRuntimeClasses are created on a cluster's first start; operators
// may change or delete them afterwards.
func BuiltinRuntimeClasses() []*api.RuntimeClass {
	rc := func(name, plugin, handler string, iso api.IsolationClass) *api.RuntimeClass {
		return &api.RuntimeClass{
			TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "RuntimeClass"},
			Metadata: api.ObjectMeta{Name: name, Labels: map[string]string{"paddock.dev/builtin": "true"}},
			Spec:     api.RuntimeClassSpec{Plugin: plugin, Handler: handler, Isolation: iso},
		}
	}
	return []*api.RuntimeClass{
		rc("runc", "runc", "", api.IsolationNamespace),
		rc("gvisor", "runsc", "", api.IsolationUserspaceKernel),
		rc("containerd", "containerd", "runc", api.IsolationNamespace),
		rc("containerd-gvisor", "containerd", "runsc", api.IsolationUserspaceKernel),
	}
}

// bootstrap creates what a new cluster needs and keeps admin.conf valid:
// the built-in runtime classes once, and a cluster-admin token whenever
// admin.conf is missing or names a token the store does not know.
func bootstrap(ctx context.Context, st *store.Store, adminConf, server, caPEM string, log *slog.Logger) error {
	const step = "builtin-runtimeclasses"
	done, err := st.StepDone(ctx, step)
	if err != nil {
		return err
	}
	if !done {
		for _, rc := range BuiltinRuntimeClasses() {
			if _, err := st.Create(ctx, rc); err != nil && !errdefs.IsAlreadyExists(err) {
				return err
			}
		}
		if err := st.MarkStepDone(ctx, step); err != nil {
			return err
		}
	}

	return ensureAdminConfig(ctx, st, adminConf, server, caPEM, "cluster admin (admin.conf)", log)
}

// ensureAdminConfig keeps a client config with a cluster-admin token at
// path: it mints a token (described by description) whenever the file is
// missing or names a token the store does not know, and points the file
// at server and caPEM.
func ensureAdminConfig(ctx context.Context, st *store.Store, path, server, caPEM, description string, log *slog.Logger) error {
	if cfg, err := client.LoadConfig(path); err == nil && adminTokenValid(ctx, st, cfg.Token) {
		if cfg.Server != server || cfg.CertificateAuthority != caPEM {
			cfg.Server, cfg.CertificateAuthority = server, caPEM
			return cfg.Write(path)
		}
		return nil
	}
	id, secret := apiserver.NewTokenSecret()
	tok := &api.Token{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Token"},
		Metadata: api.ObjectMeta{Name: id},
		Spec:     api.TokenSpec{Role: api.RoleClusterAdmin, Description: description},
		Status:   api.TokenStatus{SecretHash: apiserver.HashSecret(secret)},
	}
	if _, err := st.Create(ctx, tok); err != nil {
		return err
	}
	log.Info("created cluster-admin token", "token", id, "config", path)
	cfg := &client.Config{Server: server, CertificateAuthority: caPEM, Token: id + "." + secret, Role: string(api.RoleClusterAdmin)}
	if err := cfg.Write(path); err != nil {
		return err
	}
	return os.Chmod(path, 0o600)
}

// adminClient returns a client with the cluster-admin credential kept at
// path (minted by ensureAdminConfig when needed), for a component of this
// process that reaches its own API server.
func adminClient(ctx context.Context, st *store.Store, path, server, caPEM, description string, log *slog.Logger) (*client.Client, error) {
	if err := ensureAdminConfig(ctx, st, path, server, caPEM, description, log); err != nil {
		return nil, fmt.Errorf("credential of %s: %w", description, err)
	}
	conf, err := client.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	return client.New(conf)
}

func adminTokenValid(ctx context.Context, st *store.Store, token string) bool {
	id, secret, ok := strings.Cut(token, ".")
	if !ok {
		return false
	}
	o, err := st.Get(ctx, mustKind("tokens"), "", id)
	if err != nil {
		return false
	}
	t := o.(*api.Token)
	want := apiserver.HashSecret(secret)
	return t.Spec.Role == api.RoleClusterAdmin && subtle.ConstantTimeCompare([]byte(want), []byte(t.Status.SecretHash)) == 1
}

func mustKind(name string) *api.Kind {
	k, ok := api.KindFor(name)
	if !ok {
		panic("server: unknown kind " + name)
	}
	return k
}
