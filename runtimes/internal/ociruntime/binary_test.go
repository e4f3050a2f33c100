package ociruntime

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/internal/ociruntime/shim"
)

var (
	pluginBinOnce sync.Once
	pluginBin     string
	pluginBinErr  error
)

// buildPluginBinary builds cmd/paddock-runtime-runc, with the shim
// cmd/paddock-runc-shim next to it as `make build` installs them, once
// per test binary.
func buildPluginBinary(t *testing.T) string {
	t.Helper()
	pluginBinOnce.Do(func() {
		dir := filepath.Dir(busyboxRootfs(t))
		out := filepath.Join(dir, "paddock-runtime-runc")
		gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(gobin); err != nil {
			gobin = "go"
		}
		cmd := exec.Command(gobin, "build", "-o", dir+"/", "github.com/paddock-dev/paddock/cmd/paddock-runtime-runc", "github.com/paddock-dev/paddock/cmd/"+ShimBinary)
		cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
		if b, err := cmd.CombinedOutput(); err != nil {
			pluginBinErr = errors.New(err.Error() + ": " + string(b))
			return
		}
		pluginBin = out
	})
	if pluginBinErr != nil {
		t.Fatalf("build the plugin: %v", pluginBinErr)
	}
	return pluginBin
}

// busyboxArchive writes a docker-save archive of the busybox root
// filesystem named ref.
func busyboxArchive(t *testing.T, ref string) []byte {
	t.Helper()
	root := busyboxRootfs(t)
	var layerTar bytes.Buffer
	tw := tar.NewWriter(&layerTar)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		hdr.Name = rel
		if d.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		t.Fatalf("layer tar: %v", err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar.Bytes())), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config = v1.Config{Cmd: []string{"sh"}, Env: []string{"PATH=/bin", "IMAGE_VAR=from-archive"}, WorkingDir: "/"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	tag, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.Write(tag, img, &archive); err != nil {
		t.Fatal(err)
	}
	return archive.Bytes()
}

// launch starts the plugin binary through go-plugin, as the agent does.
func launch(t *testing.T, bin string) (*plugin.Client, *runtimev1.Client) {
	t.Helper()
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  runtimev1.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{runtimev1.ProtocolVersion: {runtimev1.PluginName: &runtimev1.GRPCPlugin{}}},
		Cmd:              exec.Command(bin),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		GRPCDialOptions:  runtimev1.DialOptions(),
		Logger:           hclog.New(&hclog.LoggerOptions{Output: testWriter{t}, Level: hclog.Warn}),
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("start the plugin: %v", err)
	}
	raw, err := rpc.Dispense(runtimev1.PluginName)
	if err != nil {
		t.Fatalf("dispense: %v", err)
	}
	return client, raw.(*runtimev1.Client)
}

// RT-HS-001, RT-HS-004, RT-CAP-002, RT-RC-001 through the real binary and
// go-plugin: Serve works, errors keep their class across the wire, an
// imported image runs, and a container survives a SIGKILL of the plugin
// and is recovered by the next one.
func TestPluginBinary(t *testing.T) {
	requirePrereqs(t)
	bin := buildPluginBinary(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	// Without the handshake cookie the binary refuses to run.
	if out, err := exec.Command(bin).CombinedOutput(); err == nil || !strings.Contains(string(out), "plugin") {
		t.Errorf("running the binary by hand = %v, %q; want a non-zero exit and a message", err, out)
	}

	stateDir := t.TempDir()
	h := &harness{t: t, stateDir: stateDir}
	client, rt := launch(t, bin)
	info, err := rt.Info(ctx, &runtimev1.InfoRequest{})
	if err != nil || info.Name != "runc" {
		t.Fatalf("Info = %v, %v", info, err)
	}
	if _, err := rt.SetConfig(ctx, &runtimev1.SetConfigRequest{ApiVersion: "v1", StateDir: stateDir, Config: []byte(`{"nope":1}`)}); !isClass(err, errdefs.ErrInvalidArgument) {
		t.Errorf("SetConfig(unknown field) over gRPC = %v, want InvalidArgument", err)
	}
	for range 2 {
		if _, err := rt.SetConfig(ctx, &runtimev1.SetConfigRequest{ApiVersion: "v1", StateDir: stateDir, Config: []byte(`{"logMaxBytes":1048576}`)}); err != nil {
			t.Fatalf("SetConfig: %v", err)
		}
	}
	hs, err := rt.Health(ctx, &runtimev1.HealthRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := hs.Recv(); err != nil || !ev.Healthy {
		t.Errorf("first health event = %v, %v; want healthy", ev, err)
	}

	// Import an image archive in chunks.
	const ref = "paddock.dev/test/busybox:latest"
	archive := busyboxArchive(t, ref)
	imp, err := rt.ImportImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for chunk := range slices.Chunk(archive, 256<<10) {
		if err := imp.Send(&runtimev1.ImportChunk{Data: chunk}); err != nil {
			t.Fatal(err)
		}
	}
	imported, err := imp.CloseAndRecv()
	if err != nil || len(imported.Images) != 1 || imported.Images[0].Ref != ref {
		t.Fatalf("ImportImage = %v, %v", imported, err)
	}
	if st, err := rt.ImageStatus(ctx, &runtimev1.ImageStatusRequest{Ref: ref}); err != nil || st.Digest != imported.Images[0].Digest {
		t.Errorf("ImageStatus = %v, %v", st, err)
	}
	if _, err := rt.ImageStatus(ctx, &runtimev1.ImageStatusRequest{Ref: "paddock.dev/test/missing:latest"}); !errdefs.IsNotFound(err) {
		t.Errorf("ImageStatus(missing) = %v, want NotFound", err)
	}

	sbResp, err := rt.CreateSandbox(ctx, &runtimev1.CreateSandboxRequest{Config: &runtimev1.SandboxConfig{Name: "bin", Tenant: "t"}})
	if err != nil {
		t.Fatal(err)
	}
	sb := sbResp.Sandbox
	created, err := rt.CreateContainer(ctx, &runtimev1.CreateContainerRequest{SandboxId: sb.Id, Config: &runtimev1.ContainerConfig{
		Name: "app", Image: ref, Command: []string{"sh", "-c", "echo hello-$IMAGE_VAR; sleep 1000"}}})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	id := created.Container.Id
	if _, err := rt.StartContainer(ctx, &runtimev1.StartContainerRequest{Id: id}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	before, err := rt.InspectContainer(ctx, &runtimev1.InspectContainerRequest{Id: id})
	if err != nil || before.State != runtimev1.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("InspectContainer = %v, %v", before, err)
	}
	// The container's shim is the shim binary next to the plugin's.
	if args, _ := h.shimOf(id); len(args) != 2 || args[0] != filepath.Join(filepath.Dir(bin), ShimBinary) {
		t.Errorf("shim command line = %q, want %s DIR", args, filepath.Join(filepath.Dir(bin), ShimBinary))
	}
	if _, err := rt.InspectContainer(ctx, &runtimev1.InspectContainerRequest{Id: "0123456789abcdef01234567"}); !errdefs.IsNotFound(err) {
		t.Errorf("InspectContainer(missing) over gRPC = %v, want NotFound", err)
	}

	// SIGKILL the plugin: the container keeps running under its shim.
	pid := client.ReattachConfig().Pid
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the plugin to die", 10*time.Second, func() bool { return client.Exited() })
	if _, err := rt.Info(ctx, &runtimev1.InfoRequest{}); !isClass(err, errdefs.ErrUnavailable) {
		t.Errorf("a call to the dead plugin = %v, want Unavailable", err)
	}
	if !shim.Alive(int(before.Pid), 0) {
		t.Fatalf("container pid %d died with the plugin", before.Pid)
	}

	// A new plugin process recovers it.
	_, rt = launch(t, bin)
	if _, err := rt.SetConfig(ctx, &runtimev1.SetConfigRequest{ApiVersion: "v1", StateDir: stateDir, Config: []byte(`{"logMaxBytes":1048576}`)}); err != nil {
		t.Fatal(err)
	}
	rec, err := rt.Recover(ctx, &runtimev1.RecoverRequest{Handle: sb.Handle})
	if err != nil || len(rec.Containers) != 1 {
		t.Fatalf("Recover = %v, %v", rec, err)
	}
	if got := rec.Containers[0]; got.Pid != before.Pid || got.StartedAt != before.StartedAt || got.State != runtimev1.ContainerState_CONTAINER_RUNNING {
		t.Errorf("recovered %v, want pid %d started %d running", got, before.Pid, before.StartedAt)
	}
	logs, err := rt.Logs(ctx, &runtimev1.LogsRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	line, err := logs.Recv()
	if err != nil || string(line.Line) != "hello-from-archive" || line.Stream != "stdout" {
		t.Errorf("first log line = %v, %v; want hello-from-archive", line, err)
	}
	if _, err := rt.StopContainer(ctx, &runtimev1.StopContainerRequest{Id: id, TimeoutSeconds: 1}); err != nil {
		t.Fatal(err)
	}
	ex, err := rt.WaitContainer(ctx, &runtimev1.WaitContainerRequest{Id: id})
	if err != nil || ex.Signal != 9 {
		t.Errorf("Wait = %v, %v; want killed by 9 (sh as pid 1 ignores SIGTERM)", ex, err)
	}
	if _, err := rt.RemoveSandbox(ctx, &runtimev1.RemoveSandboxRequest{Id: sb.Id}); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.RemoveImage(ctx, &runtimev1.RemoveImageRequest{Ref: ref}); err != nil {
		t.Fatal(err)
	}
	if list, err := rt.ListImages(ctx, &runtimev1.ListImagesRequest{}); err != nil || len(list.Images) != 0 {
		t.Errorf("ListImages after remove = %v, %v", list, err)
	}
	h.checkNoLeaks([]string{sb.Id})
}
