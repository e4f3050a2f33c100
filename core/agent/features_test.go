package agent

import (
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/test/images/imagebuild"
)

// An image not on the node is pulled from a registry (a real one, on
// loopback, plain HTTP because the plugin is configured so), with
// Pulling and Pulled events; a missing image leaves the container waiting
// in ErrImagePull / ImagePullBackOff with a Failed event.
func TestImagePull(t *testing.T) {
	h := newHarness(t)
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	img, err := imagebuild.Busybox("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/demo/busybox:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	h.cfg.Runtimes[0].Config = []byte(fmt.Sprintf(`{"insecureRegistries": [%q]}`, host))
	h.startAgent()

	p := h.pod("pulled", "sleep", "3600")
	p.Spec.Containers[0].Image = host + "/demo/busybox:v1"
	h.create(p)
	h.waitPod("pulled", "running", 60*time.Second, running)
	if ev := h.events("pulled"); !slices.Contains(ev, "Pulling") || !slices.Contains(ev, "Pulled") {
		t.Errorf("events %v, want Pulling and Pulled", ev)
	}

	missing := h.pod("missing", "true")
	missing.Spec.Containers[0].Image = host + "/demo/nothing:v1"
	h.create(missing)
	p = h.waitPod("missing", "ImagePullBackOff", 60*time.Second, func(p *api.Pod) bool {
		return len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].State.Waiting != nil &&
			p.Status.ContainerStatuses[0].State.Waiting.Reason == "ImagePullBackOff"
	})
	if w := p.Status.ContainerStatuses[0].State.Waiting; !strings.Contains(w.Message, "demo/nothing") || p.Status.Phase != api.PodPending {
		t.Errorf("waiting %+v phase %s, want the image named and Pending", w, p.Status.Phase)
	}
}

// Environment variables from the tenant's secrets and config maps reach
// the container; a missing key is CreateContainerConfigError.
func TestEnvFromSecretsAndConfigMaps(t *testing.T) {
	h := newHarness(t)
	h.startAgent()
	ctx := t.Context()
	if _, err := h.admin.Create(ctx, &api.Secret{TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Secret"}, Metadata: api.ObjectMeta{Name: "db", Tenant: h.tenant}, StringData: map[string]string{"password": "s3cret"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.admin.Create(ctx, &api.ConfigMap{TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "ConfigMap"}, Metadata: api.ObjectMeta{Name: "cfg", Tenant: h.tenant}, Data: map[string]string{"mode": "fast"}}); err != nil {
		t.Fatal(err)
	}
	p := h.pod("env", "sh", "-c", "echo $PLAIN-$PASS-$MODE; sleep 3600")
	p.Spec.Containers[0].Env = []api.EnvVar{
		{Name: "PLAIN", Value: "plain"},
		{Name: "PASS", ValueFrom: &api.EnvVarSource{SecretKeyRef: &api.KeySelector{Name: "db", Key: "password"}}},
		{Name: "MODE", ValueFrom: &api.EnvVarSource{ConfigMapKeyRef: &api.KeySelector{Name: "cfg", Key: "mode"}}},
	}
	h.create(p)
	h.waitPod("env", "running", 60*time.Second, running)
	rc, err := h.admin.Logs(ctx, h.tenant, "env", client.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if got := strings.TrimSpace(string(b)); got != "plain-s3cret-fast" {
		t.Errorf("container saw %q, want plain-s3cret-fast", got)
	}

	bad := h.pod("badenv", "true")
	bad.Spec.Containers[0].Env = []api.EnvVar{{Name: "X", ValueFrom: &api.EnvVarSource{SecretKeyRef: &api.KeySelector{Name: "db", Key: "nope"}}}}
	h.create(bad)
	p = h.waitPod("badenv", "config error", 30*time.Second, func(p *api.Pod) bool {
		return len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].State.Waiting != nil &&
			p.Status.ContainerStatuses[0].State.Waiting.Reason == "CreateContainerConfigError"
	})
	if msg := p.Status.ContainerStatuses[0].State.Waiting.Message; !strings.Contains(msg, `no key "nope"`) {
		t.Errorf("message %q, want the missing key named", msg)
	}
}

// Probes: readiness gates Ready (HTTP on the pod's loopback, exec); a
// failing liveness probe restarts the container with an Unhealthy event;
// a memory hog is OOM-killed and reported so.
func TestProbesAndOOM(t *testing.T) {
	h := newHarness(t)
	h.startAgent()

	// Ready only once /tmp/ready exists (after about a second).
	late := h.pod("late", "sh", "-c", "sleep 1; touch /tmp/ready; sleep 3600")
	late.Spec.Containers[0].ReadinessProbe = &api.Probe{Exec: &api.ExecAction{Command: []string{"test", "-f", "/tmp/ready"}}, PeriodSeconds: 1}
	h.create(late)
	sawUnready := false
	h.waitPod("late", "ready", 60*time.Second, func(p *api.Pod) bool {
		if running(p) && !p.Status.ContainerStatuses[0].Ready {
			sawUnready = true
		}
		return running(p) && p.Status.ContainerStatuses[0].Ready
	})
	if !sawUnready {
		t.Error("the container was never running-but-not-ready before its readiness probe passed")
	}

	// An HTTP readiness probe reaches busybox httpd on the pod's loopback.
	web := h.pod("web", "sh", "-c", "mkdir -p /www && echo ok > /www/healthz && exec httpd -f -p 8080 -h /www")
	web.Spec.Containers[0].ReadinessProbe = &api.Probe{HTTPGet: &api.HTTPGetAction{Path: "/healthz", Port: 8080}, PeriodSeconds: 1}
	h.create(web)
	h.waitPod("web", "ready through HTTP", 60*time.Second, func(p *api.Pod) bool { return running(p) && p.Status.ContainerStatuses[0].Ready })

	// Alive for a moment, then the liveness file goes away.
	sick := h.pod("sick", "sh", "-c", "touch /tmp/alive; sleep 2; rm /tmp/alive; sleep 3600")
	grace := int64(1)
	sick.Spec.TerminationGracePeriodSeconds = &grace
	sick.Spec.Containers[0].LivenessProbe = &api.Probe{Exec: &api.ExecAction{Command: []string{"test", "-f", "/tmp/alive"}}, PeriodSeconds: 1, FailureThreshold: 2}
	h.create(sick)
	h.waitPod("sick", "restarted by its liveness probe", 60*time.Second, func(p *api.Pod) bool {
		return len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].RestartCount >= 1
	})
	if ev := h.events("sick"); !slices.Contains(ev, "Unhealthy") || !slices.Contains(ev, "Killing") {
		t.Errorf("events %v, want Unhealthy and Killing", ev)
	}

	hog := h.pod("hog", "sh", "-c", "x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while true; do x=$x$x; done")
	hog.Spec.RestartPolicy = api.RestartNever
	hog.Spec.Containers[0].Resources.Limits = api.ResourceList{api.ResourceMemory: api.MustParseQuantity("32Mi")}
	h.create(hog)
	p := h.waitPod("hog", "Failed", 90*time.Second, func(p *api.Pod) bool { return p.Status.Phase == api.PodFailed })
	if term := p.Status.ContainerStatuses[0].State.Terminated; term == nil || term.Reason != "OOMKilled" || term.ExitCode != 137 {
		t.Errorf("hog ended %+v, want OOMKilled exit 137", term)
	}
}
