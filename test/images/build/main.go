// Command build writes Paddock's offline test images as OCI archives (OCI
// image layouts in tars): busybox.tar (paddock.dev/test/busybox:latest, from
// a static busybox binary) and server.tar (paddock.dev/test/server:latest,
// from a static build of test/images/server). `make testimages` runs it.
// The archives are reproducible: the same inputs give the same digests.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/paddock-dev/paddock/test/images/imagebuild"
)

type config struct {
	busybox string // the static busybox binary
	server  string // the static server binary
	out     string // the output directory
}

func main() {
	var cfg config
	flag.StringVar(&cfg.busybox, "busybox", "/bin/busybox", "static busybox binary (Debian's busybox-static)")
	flag.StringVar(&cfg.server, "server", "", "static build of ./test/images/server (required)")
	flag.StringVar(&cfg.out, "out", "build/images", "directory to write busybox.tar and server.tar into")
	flag.Parse()
	if err := run(cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
}

func run(cfg config, stdout io.Writer) error {
	if cfg.server == "" {
		return fmt.Errorf("-server is required: build ./test/images/server with CGO_ENABLED=0 first")
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	builds := []struct {
		file, ref string
		build     func(string) (v1.Image, error)
		input     string
	}{
		{"busybox.tar", imagebuild.BusyboxRef, imagebuild.Busybox, cfg.busybox},
		{"server.tar", imagebuild.ServerRef, imagebuild.Server, cfg.server},
	}
	for _, b := range builds {
		img, err := b.build(b.input)
		if err != nil {
			return err
		}
		path := filepath.Join(cfg.out, b.file)
		err = imagebuild.WriteFile(path, func(w io.Writer) error { return imagebuild.WriteOCIArchive(w, b.ref, img) })
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		digest, err := img.Digest()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\t%s@%s\n", path, b.ref, digest)
	}
	return nil
}
