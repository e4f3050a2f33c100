package cli

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/controller"
	"github.com/paddock-dev/paddock/core/controller/controllertest"
	"github.com/paddock-dev/paddock/core/server"
	"github.com/paddock-dev/paddock/internal/testcluster"
)

func TestRunArgs(t *testing.T) {
	tests := []struct {
		args    []string
		dash    int
		name    string
		command []string
		wantErr string
	}{
		{args: []string{"web"}, dash: -1, name: "web"},
		{args: []string{"web", "sh", "-c", "sleep 1"}, dash: 1, name: "web", command: []string{"sh", "-c", "sleep 1"}},
		{args: []string{"web"}, dash: 1, name: "web"},
		{args: []string{"sh"}, dash: 0, wantErr: `run takes NAME before "--"`},
		{args: nil, dash: -1, wantErr: `run takes NAME before "--"`},
		{args: []string{"web", "sh"}, dash: -1, wantErr: `run takes one NAME, got "web sh"; put the command after "--"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			name, cmd, err := runArgs(tt.args, tt.dash)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("runArgs(%q, %d) error = %v, want one starting %q", tt.args, tt.dash, err, tt.wantErr)
				}
				return
			}
			if err != nil || name != tt.name || !slices.Equal(cmd, tt.command) {
				t.Errorf("runArgs(%q, %d) = %q, %q, %v; want %q, %q", tt.args, tt.dash, name, cmd, err, tt.name, tt.command)
			}
		})
	}
}

func TestRunOptions(t *testing.T) {
	o := runOptions{image: "nginx", replicas: 3, port: 80, env: []string{"A=1", "B=x=y"}, runtimeClass: "gvisor"}
	d, err := o.deployment("web", "acme", []string{"nginx", "-g", "daemon off;"})
	if err != nil {
		t.Fatal(err)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if d.Metadata.Name != "web" || d.Metadata.Tenant != "acme" || *d.Spec.Replicas != 3 || d.Spec.Selector.MatchLabels["app"] != "web" ||
		d.Spec.Template.Metadata.Labels["app"] != "web" || d.Metadata.Labels["app"] != "web" {
		t.Errorf("deployment metadata/selector = %+v %+v", d.Metadata, d.Spec.Selector)
	}
	if c.Name != "web" || c.Image != "nginx" || !slices.Equal(c.Command, []string{"nginx", "-g", "daemon off;"}) ||
		len(c.Ports) != 1 || c.Ports[0].ContainerPort != 80 || d.Spec.Template.Spec.RuntimeClassName != "gvisor" {
		t.Errorf("container = %+v", c)
	}
	if want := []api.EnvVar{{Name: "A", Value: "1"}, {Name: "B", Value: "x=y"}}; !slices.Equal(c.Env, want) {
		t.Errorf("env = %+v, want %+v", c.Env, want)
	}
	api.Default(d)
	if err := api.Validate(d); err != nil {
		t.Errorf("the deployment run makes is invalid: %v", err)
	}

	bad := []struct {
		o       runOptions
		wantErr string
	}{
		{runOptions{}, "--image is required"},
		{runOptions{image: "x", replicas: -1}, "--replicas -1: want 0 or more"},
		{runOptions{image: "x", port: 70000}, "--port 70000: want a port number"},
		{runOptions{image: "x", env: []string{"NOEQUALS"}}, `--env "NOEQUALS": want KEY=VALUE`},
		{runOptions{image: "x", env: []string{"=v"}}, `--env "=v": want KEY=VALUE`},
	}
	for _, tt := range bad {
		if _, err := tt.o.deployment("web", "acme", nil); err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
			t.Errorf("deployment(%+v) error = %v, want one starting %q", tt.o, err, tt.wantErr)
		}
	}
}

func TestDeploymentArg(t *testing.T) {
	for _, ok := range [][]string{{"deployment/web"}, {"deploy/web"}, {"deployment", "web"}} {
		if name, err := deploymentArg(ok); err != nil || name != "web" {
			t.Errorf("deploymentArg(%q) = %q, %v; want web", ok, name, err)
		}
	}
	for _, bad := range [][]string{{"deployment"}, {"pod/web"}, {"deploy/a", "deploy/b"}, {"deployment", "a", "b"}} {
		if _, err := deploymentArg(bad); err == nil {
			t.Errorf("deploymentArg(%q) succeeded, want an error", bad)
		}
	}
}

func TestRolloutProgress(t *testing.T) {
	d := func(gen, observed int64, want, replicas, updated, available int32) *api.Deployment {
		return &api.Deployment{
			Metadata: api.ObjectMeta{Name: "web", Generation: gen},
			Spec:     api.DeploymentSpec{Replicas: &want},
			Status:   api.DeploymentStatus{ObservedGeneration: observed, Replicas: replicas, UpdatedReplicas: updated, AvailableReplicas: available},
		}
	}
	tests := []struct {
		d    *api.Deployment
		want string
		done bool
	}{
		{d(2, 1, 3, 3, 3, 3), "Waiting for deployment spec update to be observed...", false},
		{d(2, 2, 3, 4, 1, 3), `Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...`, false},
		{d(2, 2, 3, 4, 3, 3), `Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...`, false},
		{d(2, 2, 3, 3, 3, 2), `Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are available...`, false},
		{d(2, 2, 3, 3, 3, 3), `deployment "web" successfully rolled out`, true},
	}
	for _, tt := range tests {
		got, done := rolloutProgress(tt.d)
		if got != tt.want || done != tt.done {
			t.Errorf("rolloutProgress(%+v) = %q, %v; want %q, %v", tt.d.Status, got, done, tt.want, tt.done)
		}
	}
}

func TestPickRollback(t *testing.T) {
	tmpl := func(image string) api.PodTemplateSpec {
		return api.PodTemplateSpec{Spec: api.PodSpec{Containers: []api.Container{{Name: "c", Image: image}}}}
	}
	rs := func(rev int, image string) *api.ReplicaSet {
		return &api.ReplicaSet{
			Metadata: api.ObjectMeta{Name: fmt.Sprintf("web-%d", rev), Annotations: map[string]string{controller.RevisionAnnotation: fmt.Sprint(rev)}},
			Spec:     api.ReplicaSetSpec{Template: tmpl(image)},
		}
	}
	rss := []*api.ReplicaSet{rs(1, "v1"), rs(2, "v2"), rs(3, "v3")}
	dep := func(image string) *api.Deployment {
		return &api.Deployment{Metadata: api.ObjectMeta{Name: "web"}, Spec: api.DeploymentSpec{Template: tmpl(image)}}
	}
	tests := []struct {
		name    string
		d       *api.Deployment
		rss     []*api.ReplicaSet
		to      int64
		want    string
		wantErr string
	}{
		{"previous of the newest", dep("v3"), rss, 0, "web-2", ""},
		{"previous of a middle one", dep("v2"), rss, 0, "web-1", ""},
		{"template not rolled out yet", dep("v4"), rss, 0, "web-3", ""},
		{"given revision", dep("v3"), rss, 1, "web-1", ""},
		{"missing revision", dep("v3"), rss, 7, "", "--to-revision 7: deployment/web has no such revision (it has: 1, 2, 3)"},
		{"nothing before the first", dep("v1"), rss[:1], 0, "", "deployment/web has no revision before the current one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pickRollback(tt.d, tt.rss, tt.to)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("pickRollback error = %v, want one starting %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got.Metadata.Name != tt.want {
				t.Fatalf("pickRollback = %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

// paddock runs the command line against cl as its cluster admin.
func paddock(t *testing.T, cl *testcluster.Cluster, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := NewRoot(&out, &errOut)
	root.SetArgs(append([]string{"--config", server.AdminConfigPath(cl.DataDir)}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String() + errOut.String(), err
}

func mustPaddock(t *testing.T, cl *testcluster.Cluster, args ...string) string {
	t.Helper()
	out, err := paddock(t, cl, args...)
	if err != nil {
		t.Fatalf("paddock %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestWorkloadCommands drives run, scale and rollout against a server
// that runs its own (leader-elected) controllers, with a stand-in node
// (controllertest) in place of the scheduler and node agent.
func TestWorkloadCommands(t *testing.T) {
	cl := testcluster.Start(t, func(c *server.Config) { c.Controllers.Enabled = true })
	controllertest.Node(t, cl, "n1")
	mustPaddock(t, cl, "tenant", "create", "acme")

	if out := mustPaddock(t, cl, "-t", "acme", "run", "web", "--image", "busybox:v1", "--replicas", "2", "--port", "8080", "--", "httpd", "-f"); out != "deployment/web created\n" {
		t.Errorf("run printed %q", out)
	}
	out := mustPaddock(t, cl, "-t", "acme", "rollout", "status", "deployment/web", "--timeout", "1m")
	if !strings.HasSuffix(out, "deployment \"web\" successfully rolled out\n") {
		t.Errorf("rollout status printed %q", out)
	}

	if out := mustPaddock(t, cl, "-t", "acme", "scale", "deploy/web", "--replicas", "3"); out != "deployment/web scaled\n" {
		t.Errorf("scale printed %q", out)
	}
	mustPaddock(t, cl, "-t", "acme", "rollout", "status", "deploy", "web")
	if d := getDeployment(t, cl, "web"); d.Status.AvailableReplicas != 3 {
		t.Errorf("after scale and rollout status: %d available, want 3", d.Status.AvailableReplicas)
	}

	// A new image through the API, as apply would.
	d := getDeployment(t, cl, "web")
	d.Spec.Template.Spec.Containers[0].Image = "busybox:v2"
	if _, err := cl.Admin.Update(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	mustPaddock(t, cl, "-t", "acme", "rollout", "status", "deployment/web")
	hist := mustPaddock(t, cl, "-t", "acme", "rollout", "history", "deployment/web")
	lines := strings.Split(strings.TrimSpace(hist), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "1 ") || !strings.Contains(lines[1], "busybox:v1") ||
		!strings.HasPrefix(lines[2], "2 ") || !strings.Contains(lines[2], "busybox:v2") || !strings.HasSuffix(lines[2], "*") {
		t.Errorf("rollout history printed:\n%s", hist)
	}

	if out := mustPaddock(t, cl, "-t", "acme", "rollout", "undo", "deployment/web"); out != "deployment/web rolled back to revision 1\n" {
		t.Errorf("rollout undo printed %q", out)
	}
	mustPaddock(t, cl, "-t", "acme", "rollout", "status", "deployment/web")
	if img := getDeployment(t, cl, "web").Spec.Template.Spec.Containers[0].Image; img != "busybox:v1" {
		t.Errorf("after undo the image is %s, want busybox:v1", img)
	}
	if out := mustPaddock(t, cl, "-t", "acme", "rollout", "undo", "deployment/web", "--to-revision", "3"); out != "deployment/web skipped rollback: it already runs revision 3\n" {
		t.Errorf("undo to the current revision printed %q", out)
	}

	t.Run("rollout status times out", func(t *testing.T) {
		mustPaddock(t, cl, "-t", "acme", "run", "big", "--image", "busybox", "--replicas", "1")
		mustPaddock(t, cl, "-t", "acme", "rollout", "status", "deployment/big")
		// Paused: nothing rolls out, so status waits until --timeout.
		d := getDeployment(t, cl, "big")
		d.Spec.Paused = true
		d.Spec.Template.Spec.Containers[0].Image = "busybox:v9"
		if _, err := cl.Admin.Update(context.Background(), d); err != nil {
			t.Fatal(err)
		}
		out, err := paddock(t, cl, "-t", "acme", "rollout", "status", "deployment/big", "--timeout", "1s")
		if err == nil || !strings.Contains(err.Error(), "timed out after 1s waiting for the rollout of deployment/big") {
			t.Errorf("rollout status of a paused deployment: %v\n%s", err, out)
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, tt := range []struct {
			args    []string
			wantErr string
		}{
			{[]string{"scale", "deploy/web"}, "--replicas is required"},
			{[]string{"scale", "pod/x", "--replicas", "1"}, "cannot scale pods"},
			{[]string{"scale", "deploy/nope", "--replicas", "1"}, "not found"},
			{[]string{"run", "x"}, "--image is required"},
			{[]string{"rollout", "undo", "deployment/web", "--to-revision", "9"}, "--to-revision 9: deployment/web has no such revision (it has: 2, 3)"},
			{[]string{"rollout", "status", "pod/web"}, "want one deployment"},
		} {
			if out, err := paddock(t, cl, append([]string{"-t", "acme"}, tt.args...)...); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("paddock %s: %v (%s), want an error containing %q", strings.Join(tt.args, " "), err, out, tt.wantErr)
			}
		}
	})
}

func getDeployment(t *testing.T, cl *testcluster.Cluster, name string) *api.Deployment {
	t.Helper()
	o, err := cl.Admin.Get(context.Background(), deploymentKind, "acme", name)
	if err != nil {
		t.Fatal(err)
	}
	return o.(*api.Deployment)
}
