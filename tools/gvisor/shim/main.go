// Command containerd-shim-runsc-v1 is gVisor's containerd shim
// (gvisor.dev/gvisor/shim) with two changes to how it starts. It asks the
// kernel to spare it from the OOM killer (oom_score_adj -999), which
// needs CAP_SYS_RESOURCE: where root lacks it (some container and CI
// sandboxes) gVisor's shim refuses to start, this one keeps the score
// containerd gave it (as containerd's own runc shim does). And it answers
// containerd 1.6's start the way 1.6 reads. Everything else is gVisor's
// shim.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/sys"
	"golang.org/x/sys/unix"
	shimv1 "gvisor.dev/gvisor/pkg/shim/v1"
	_ "gvisor.dev/gvisor/pkg/shim/v1/plugin" // registers the runsc task service
	"gvisor.dev/gvisor/pkg/shim/v1/runsc"
)

const (
	runtimeName = "io.containerd.runsc.v1"
	// oomScore is the score gVisor's shim gives itself.
	oomScore = -999
	// groupAnnotation names the pod whose shim a container shares when
	// grouping is on (gVisor's shim config, grouping = true).
	groupAnnotation = "io.kubernetes.cri.sandbox-id"
)

func main() {
	shim.Run(context.Background(), manager{shimv1.NewShimManager(runtimeName)})
}

// manager is gVisor's shim manager with its own Start.
type manager struct{ shim.Manager }

// Start starts the shim's server process for container id, or points
// containerd at the running one of its group, as gVisor's Start does, and
// answers with the bare address of its socket, which containerd 1.6 reads
// (the JSON shim.Run would write only 1.7 and later parse; they read a
// bare address too). So it exits rather than return.
func (m manager) Start(ctx context.Context, id string, opts shim.StartOpts) (shim.BootstrapParams, error) {
	params, err := m.start(ctx, id, opts)
	if err != nil {
		return params, err
	}
	if _, err := os.Stdout.WriteString(params.Address); err != nil {
		return params, err
	}
	os.Exit(0)
	panic("unreachable")
}

func (m manager) start(ctx context.Context, id string, opts shim.StartOpts) (_ shim.BootstrapParams, err error) {
	grouping, err := group(id)
	if err != nil {
		return shim.BootstrapParams{}, err
	}
	address, err := shim.SocketAddress(ctx, opts.Address, grouping, opts.Debug)
	if err != nil {
		return shim.BootstrapParams{}, err
	}
	params := shim.BootstrapParams{Version: 2, Address: address, Protocol: "ttrpc"}
	socket, err := shim.NewSocket(address)
	if err != nil {
		if !shim.SocketEaddrinuse(err) {
			return shim.BootstrapParams{}, fmt.Errorf("create new shim socket: %w", err)
		}
		if shim.CanConnect(address) {
			return params, os.WriteFile("address", []byte(address), 0o644)
		}
		if err := shim.RemoveSocket(address); err != nil {
			return shim.BootstrapParams{}, fmt.Errorf("remove pre-existing socket: %w", err)
		}
		if socket, err = shim.NewSocket(address); err != nil {
			return shim.BootstrapParams{}, fmt.Errorf("try create new shim socket 2x: %w", err)
		}
	}
	defer func() {
		if err != nil {
			socket.Close()
			shim.RemoveSocket(address)
		}
	}()
	if err := os.WriteFile("address", []byte(address), 0o644); err != nil {
		return shim.BootstrapParams{}, err
	}
	f, err := socket.File()
	if err != nil {
		return shim.BootstrapParams{}, err
	}
	defer f.Close()
	cmd, err := serverCommand(ctx, id, opts)
	if err != nil {
		return shim.BootstrapParams{}, err
	}
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		return shim.BootstrapParams{}, err
	}
	defer func() {
		if err != nil {
			cmd.Process.Kill()
		}
	}()
	go cmd.Wait()
	if err := shim.WritePidFile("shim.pid", cmd.Process.Pid); err != nil {
		return shim.BootstrapParams{}, err
	}
	// Without CAP_SYS_RESOURCE the shim keeps containerd's score. Nothing
	// is logged: containerd reads this command's output as its answer.
	if err := sys.SetOOMScore(cmd.Process.Pid, oomScore); err != nil && !errors.Is(err, fs.ErrPermission) {
		return shim.BootstrapParams{}, fmt.Errorf("failed to set OOM Score on shim: %w", err)
	}
	return params, nil
}

// group is the key of the shim container id shares: its pod's when
// grouping is on and its spec names one, else its own.
func group(id string) (string, error) {
	if o := runsc.GetRuntimeOptions(); o == nil || !o.Grouping {
		return id, nil
	}
	// containerd writes the spec into the bundle, the working directory.
	b, err := os.ReadFile("config.json")
	if err != nil {
		return "", fmt.Errorf("failed to read config.json when starting shim: %w", err)
	}
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return "", err
	}
	if g, ok := spec.Annotations[groupAnnotation]; ok {
		return g, nil
	}
	return id, nil
}

// serverCommand is this binary as the shim's server for id, in a process
// group of its own.
func serverCommand(ctx context.Context, id string, opts shim.StartOpts) (*exec.Cmd, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-namespace", ns, "-address", opts.Address, "-id", id}
	if opts.Debug {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=2")
	cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true}
	return cmd, nil
}
