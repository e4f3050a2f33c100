package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/internal/netns"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// prober runs a container's liveness and readiness probes. HTTP and TCP
// probes connect to the container's port on the loopback of the pod's
// network namespace: they need no pod network and reach nothing else.
type prober struct {
	cancel context.CancelFunc
	mu     sync.Mutex
	ready  bool
}

func (p *prober) isReady() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ready
}

// ready reports a running container's readiness: true without a
// readiness probe, else the probe's verdict.
func (st *podState) ready(id string, spec *api.Container) bool {
	if spec.ReadinessProbe == nil {
		return true
	}
	if p := st.probes[id]; p != nil {
		return p.isReady()
	}
	return false
}

func (st *podState) stopProbe(id string) {
	if p := st.probes[id]; p != nil {
		p.cancel()
		delete(st.probes, id)
	}
}

func (st *podState) stopProbes() {
	for id := range st.probes {
		st.stopProbe(id)
	}
}

// ensureProbes starts the probes of a running container once.
func (st *podState) ensureProbes(a *Agent, key string, pod *api.Pod, rc *runtimev1.Client, spec *api.Container, c *runtimev1.Container, ns string) {
	if spec.LivenessProbe == nil && spec.ReadinessProbe == nil {
		return
	}
	if st.probes[c.Id] != nil {
		return
	}
	ctx, cancel := context.WithCancel(a.ctx)
	p := &prober{cancel: cancel}
	st.probes[c.Id] = p
	t := probeTarget{a: a, rc: rc, id: c.Id, netns: ns}
	if spec.ReadinessProbe != nil {
		go t.loop(ctx, spec.ReadinessProbe, func(ok bool, msg string) {
			p.mu.Lock()
			changed := p.ready != ok
			p.ready = ok
			p.mu.Unlock()
			if changed {
				if !ok {
					a.events.pod(pod, "Warning", "Unhealthy", fmt.Sprintf("Readiness probe of container %s failed: %s", spec.Name, msg))
				}
				a.queue.Add(key)
			}
		})
	}
	if spec.LivenessProbe != nil {
		grace := int64(30)
		if pod.Spec.TerminationGracePeriodSeconds != nil {
			grace = *pod.Spec.TerminationGracePeriodSeconds
		}
		go t.loop(ctx, spec.LivenessProbe, func(ok bool, msg string) {
			if ok {
				return
			}
			a.events.pod(pod, "Warning", "Unhealthy", fmt.Sprintf("Liveness probe of container %s failed: %s", spec.Name, msg))
			a.events.pod(pod, "Normal", "Killing", fmt.Sprintf("Container %s failed its liveness probe and will be restarted", spec.Name))
			cancel() // one kill per container
			if _, err := rc.StopContainer(a.ctx, &runtimev1.StopContainerRequest{Id: c.Id, TimeoutSeconds: grace}); err != nil {
				a.log.Warn("stop unhealthy container", "container", c.Id, "error", err)
			}
			a.queue.Add(key)
		})
	}
}

// probeTarget is what a probe checks.
type probeTarget struct {
	a     *Agent
	rc    *runtimev1.Client
	id    string
	netns string
}

// loop runs probe until ctx ends, calling verdict when the result
// crosses its success or failure threshold (and on the first result).
func (t probeTarget) loop(ctx context.Context, probe *api.Probe, verdict func(ok bool, msg string)) {
	period := seconds(probe.PeriodSeconds, 10)
	timeout := seconds(probe.TimeoutSeconds, 1)
	successes, failures := int(max(probe.SuccessThreshold, 1)), 3
	if probe.FailureThreshold > 0 {
		failures = int(probe.FailureThreshold)
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Duration(probe.InitialDelaySeconds) * time.Second):
	}
	var okRun, failRun int
	for {
		err := t.check(ctx, probe, timeout)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			okRun, failRun = okRun+1, 0
			if okRun == successes {
				verdict(true, "")
			}
		} else {
			failRun, okRun = failRun+1, 0
			if failRun == failures {
				verdict(false, err.Error())
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(period):
		}
	}
}

func seconds(v int32, def int) time.Duration {
	if v <= 0 {
		return time.Duration(def) * time.Second
	}
	return time.Duration(v) * time.Second
}

// check runs a probe once.
func (t probeTarget) check(ctx context.Context, probe *api.Probe, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case probe.Exec != nil:
		resp, err := t.rc.ExecSync(ctx, &runtimev1.ExecSyncRequest{Id: t.id, Command: probe.Exec.Command, TimeoutSeconds: int64(max(timeout/time.Second, 1))})
		if err != nil {
			return err
		}
		if resp.ExitCode != 0 {
			return fmt.Errorf("command %q exited %d: %s", probe.Exec.Command, resp.ExitCode, truncate(string(resp.Stdout)+string(resp.Stderr), 200))
		}
		return nil
	case probe.TCPSocket != nil:
		conn, err := t.dial(ctx, probe.TCPSocket.Port)
		if err != nil {
			return err
		}
		return conn.Close()
	case probe.HTTPGet != nil:
		return t.httpGet(ctx, probe.HTTPGet)
	}
	return fmt.Errorf("the probe names no action")
}

// dial connects to port on the loopback of the pod's network namespace.
func (t probeTarget) dial(ctx context.Context, port int32) (net.Conn, error) {
	if t.netns == "" {
		return nil, fmt.Errorf("the pod has no network namespace")
	}
	var conn net.Conn
	err := netns.Do(t.netns, func() (err error) {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
		return err
	})
	return conn, err
}

func (t probeTarget) httpGet(ctx context.Context, h *api.HTTPGetAction) error {
	scheme := "http"
	tr := &http.Transport{
		DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return t.dial(ctx, h.Port) },
		DisableKeepAlives: true,
	}
	if h.Scheme == "HTTPS" {
		scheme = "https"
		// Like Kubernetes: a probe checks that the server answers, not
		// who it is.
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	path := h.Path
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://localhost:%d%s", scheme, h.Port, path), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "paddock-probe")
	resp, err := (&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe answered %s", resp.Status)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
