package oci

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/paddock-dev/paddock/core/errdefs"
)

// dockerHub is the registry that go-containerregistry calls index.docker.io
// and Docker users call docker.io.
const dockerHub = "docker.io"

// NormalizeReference returns the canonical form of an image reference, the
// way Docker spells it: a registry, a repository and a tag or digest, with
// Docker Hub's defaults filled in ("busybox" becomes
// "docker.io/library/busybox:latest"; "paddock.dev/test/busybox:latest" stays).
// A reference that is not valid is an ErrInvalidArgument naming it.
func NormalizeReference(ref string) (string, error) {
	r, err := parseReference(ref, false)
	if err != nil {
		return "", err
	}
	return canonical(r), nil
}

// parseReference parses ref for go-containerregistry. insecure lets the
// registry be reached over plain HTTP.
func parseReference(ref string, insecure bool) (name.Reference, error) {
	if strings.TrimSpace(ref) == "" {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "image reference is empty")
	}
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, errdefs.New(errdefs.ErrInvalidArgument,
			fmt.Sprintf("image reference %q is not valid: want [REGISTRY/]REPOSITORY[:TAG|@sha256:DIGEST] in lower case: %v", ref, err))
	}
	return r, nil
}

// canonical spells a parsed reference the way Docker does.
func canonical(r name.Reference) string {
	repo := r.Context()
	registry := repo.RegistryStr()
	if registry == name.DefaultRegistry {
		registry = dockerHub
	}
	base := registry + "/" + repo.RepositoryStr()
	switch r := r.(type) {
	case name.Digest:
		return base + "@" + r.DigestStr()
	case name.Tag:
		return base + ":" + r.TagStr()
	default:
		return base + ":" + r.Identifier()
	}
}
