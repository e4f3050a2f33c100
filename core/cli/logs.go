package cli

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/spf13/cobra"
)

// logsFlags are the flags of `paddock logs`.
type logsFlags struct {
	container                    string
	follow, timestamps, previous bool
	since                        time.Duration
	sinceTime                    string
	tail                         int64
}

func newLogsCmd(g *globals) *cobra.Command {
	var f logsFlags
	cmd := &cobra.Command{
		Use:   "logs POD [-c CONTAINER]",
		Short: "Print the log of a container in a pod",
		Long: `Print the log of a container in a pod, read from its node through the API
server. Without -c the pod must have exactly one container.`,
		Example: `  paddock logs web -t acme
  paddock logs web -c sidecar -f --tail 20
  paddock logs web --since 5m --timestamps`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := f.options()
			if err != nil {
				return err
			}
			c, tenant, err := g.podClient()
			if err != nil {
				return err
			}
			rc, err := c.Logs(cmd.Context(), tenant, args[0], opts)
			if err != nil {
				return err
			}
			defer rc.Close()
			if _, err := io.Copy(g.out, rc); err != nil && cmd.Context().Err() == nil {
				return fmt.Errorf("reading the log of pod %q: %w", args[0], err)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.container, "container", "c", "", "container to read (default: the pod's only container)")
	fl.BoolVarP(&f.follow, "follow", "f", false, "keep printing new lines until the container exits")
	fl.DurationVar(&f.since, "since", 0, "only lines newer than this, such as 30s or 5m (at most one of --since and --since-time)")
	fl.StringVar(&f.sinceTime, "since-time", "", "only lines at or after this RFC 3339 time, such as 2026-01-02T15:04:05Z")
	fl.Int64Var(&f.tail, "tail", -1, "only the last N lines (-1 for all)")
	fl.BoolVar(&f.timestamps, "timestamps", false, "start each line with its time (RFC 3339, nanoseconds)")
	fl.BoolVarP(&f.previous, "previous", "p", false, "the log of the container's previous instance, if it restarted")
	return cmd
}

// options checks the flags and returns the client's options.
func (f logsFlags) options() (client.LogOptions, error) {
	o := client.LogOptions{Container: f.container, Follow: f.follow, Timestamps: f.timestamps, Previous: f.previous}
	if f.since < 0 {
		return o, fmt.Errorf("--since %s: want a positive duration such as 5m", f.since)
	}
	o.Since = f.since
	if f.sinceTime != "" {
		if f.since != 0 {
			return o, errors.New("--since and --since-time: give at most one")
		}
		t, err := time.Parse(time.RFC3339Nano, f.sinceTime)
		if err != nil {
			return o, fmt.Errorf("--since-time %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", f.sinceTime)
		}
		o.SinceTime = t
	}
	switch {
	case f.tail < -1:
		return o, fmt.Errorf("--tail %d: want a number of lines, or -1 for all", f.tail)
	case f.tail >= 0:
		o.TailLines = &f.tail
	}
	return o, nil
}

// podClient returns an API client and the tenant of a command on a pod.
func (g *globals) podClient() (*client.Client, string, error) {
	c, cfg, err := g.client()
	if err != nil {
		return nil, "", err
	}
	pods, _ := api.KindFor("pods")
	tenant, err := g.requireTenant(pods, cfg)
	return c, tenant, err
}
