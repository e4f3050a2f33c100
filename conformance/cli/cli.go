// Package cli is the `paddock conformance` command (runtime and network):
// it launches a plugin through plugins/pluginhost, exactly as the node
// agent does, runs a conformance suite against it, prints a summary,
// writes junit.xml and results.json, and fails when a case fails.
package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/paddock-dev/paddock/conformance/runtimetest"
	"github.com/paddock-dev/paddock/plugins/pluginhost"
	"github.com/spf13/cobra"
)

// New returns the conformance command tree, writing to out and errOut.
func New(out, errOut io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "conformance",
		Short: "Prove a runtime or network plugin with the conformance suite",
	}
	cmd.AddCommand(newRuntimeCmd(out, errOut), newNetworkCmd(out, errOut))
	return cmd
}

type runtimeFlags struct {
	commonFlags
	profile, imageArchive, image, volumeRoot string
	maxPluginLog, maxPluginRSS               int64
}

func newRuntimeCmd(out, errOut io.Writer) *cobra.Command {
	var f runtimeFlags
	cmd := &cobra.Command{
		Use:   "runtime --plugin PATH",
		Short: "Run the runtime conformance cases (RT-*) against a runtime plugin",
		Long: `Run the runtime conformance cases against the plugin binary at --plugin,
launched through the same host code the node agent uses. Each case checks
that it leaked no processes, mounts or cgroups. Prints a summary, writes
junit.xml and results.json to --report-dir, and exits non-zero if any case
fails. Run it as root on a machine (or CI job) of its own.

The volume case (RT-CT-008) bind-mounts directories it makes under a
volume root. Without --volume-root the command makes a temporary one and
adds it to the "allowedMountRoots" list of the plugin configuration (the
runc plugin's field). With --volume-root the configuration is handed over
as it is and must allow mounts from that directory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.list {
				for _, c := range runtimetest.Cases() {
					listCase(out, c.ID, c.Level, c.Profile, c.Name)
				}
				return nil
			}
			return runRuntime(cmd.Context(), f, out, errOut)
		},
	}
	fl := cmd.Flags()
	f.register(fl, "runtime")
	fl.StringVar(&f.profile, "profile", "core", "profile claimed: core or sandboxed")
	fl.StringVar(&f.imageArchive, "image-archive", "build/images/busybox.tar", "OCI archive of the test image (make testimages builds it)")
	fl.StringVar(&f.image, "image", "paddock.dev/test/busybox:latest", "reference of the test image in the archive")
	fl.StringVar(&f.volumeRoot, "volume-root", "", "directory the plugin configuration allows mounts from, for RT-CT-008 (default: a temporary one added to the configuration's allowedMountRoots)")
	fl.Int64Var(&f.maxPluginLog, "max-plugin-log", 16<<20, "bytes the plugin may log to stderr over the whole run (RT-HS-007)")
	fl.Int64Var(&f.maxPluginRSS, "max-plugin-rss", 256<<20, "resident memory in bytes the plugin may reach while a container floods its log (RT-EX-007)")
	return cmd
}

func runRuntime(ctx context.Context, f runtimeFlags, out, errOut io.Writer) error {
	sel, config, err := f.check("runtime")
	if err != nil {
		return err
	}
	if f.maxPluginLog <= 0 || f.maxPluginRSS <= 0 {
		return fmt.Errorf("--max-plugin-log %d, --max-plugin-rss %d: want positive byte counts", f.maxPluginLog, f.maxPluginRSS)
	}
	volumeRoot := f.volumeRoot
	if volumeRoot == "" {
		dir, err := os.MkdirTemp("", "paddock-volumes-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if config, err = withMountRoot(config, dir); err != nil {
			return err
		}
		volumeRoot = dir
	} else if fi, err := os.Stat(volumeRoot); err != nil || !fi.IsDir() {
		return fmt.Errorf("--volume-root %s: want an existing directory (%v)", volumeRoot, err)
	}
	inst, stop, err := launch(ctx, pluginhost.RuntimeKind, f.launchSpec(config), errOut)
	if err != nil {
		return err
	}
	defer stop()
	rep, err := runtimetest.Run(ctx, runtimetest.Config{
		Target:            runtimetest.HostTarget(inst),
		Profile:           f.profile,
		Focus:             sel.focus,
		Skip:              sel.skip,
		ImageArchive:      f.imageArchive,
		Image:             f.image,
		VolumeRoot:        volumeRoot,
		MaxPluginLogBytes: f.maxPluginLog,
		MaxPluginRSSBytes: f.maxPluginRSS,
		CaseTimeout:       f.caseTimeout,
		Progress:          errOut,
	})
	if err != nil {
		return err
	}
	return finish(rep, f.reportDir, out)
}

// withMountRoot returns the plugin configuration config (a JSON object)
// with dir added to its allowedMountRoots list.
func withMountRoot(config []byte, dir string) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(config, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("--plugin-config: want a JSON object to add the volume root to its allowedMountRoots, or give --volume-root (%v)", err)
	}
	var roots []string
	if raw, ok := obj["allowedMountRoots"]; ok {
		if err := json.Unmarshal(raw, &roots); err != nil {
			return nil, fmt.Errorf("--plugin-config: allowedMountRoots: want a list of paths: %w", err)
		}
	}
	roots = append(roots, dir)
	raw, err := json.Marshal(roots)
	if err != nil {
		return nil, err
	}
	obj["allowedMountRoots"] = raw
	return json.Marshal(obj)
}
