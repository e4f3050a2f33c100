package apiserver

import (
	"strings"
	"testing"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
)

func boolPtr(b bool) *bool { return &b }

// withSecurity returns a pod spec whose first container has sc.
func withSecurity(sc api.SecurityContext) func(*api.PodSpec) {
	return func(s *api.PodSpec) { s.Containers[0].SecurityContext = &sc }
}

// podSecurityCases are pod specs admission must refuse: the field it must
// name, the class and words of the reason.
var podSecurityCases = []struct {
	name   string
	mutate func(*api.PodSpec)
	field  string // below the spec
	class  error
	reason string
}{
	{"privileged", withSecurity(api.SecurityContext{Privileged: boolPtr(true)}),
		"containers[0].securityContext.privileged", errdefs.ErrPermissionDenied, "a tenant's pods may not run privileged"},
	{"hostNetwork", func(s *api.PodSpec) { s.HostNetwork = true },
		"hostNetwork", errdefs.ErrPermissionDenied, "may not share the node's namespaces"},
	{"hostPID", func(s *api.PodSpec) { s.HostPID = true },
		"hostPID", errdefs.ErrPermissionDenied, "node's processes"},
	{"hostIPC", func(s *api.PodSpec) { s.HostIPC = true },
		"hostIPC", errdefs.ErrPermissionDenied, "node's shared memory"},
	{"hostPath", func(s *api.PodSpec) {
		s.Volumes = []api.Volume{{Name: "root", HostPath: &api.HostPathVolumeSource{Path: "/"}}}
		s.Containers[0].VolumeMounts = []api.VolumeMount{{Name: "root", MountPath: "/host"}}
	}, "volumes[0].hostPath", errdefs.ErrPermissionDenied, "may not mount the node's files"},
	{"add SYS_ADMIN", withSecurity(api.SecurityContext{Capabilities: &api.Capabilities{Add: []api.Capability{"NET_BIND_SERVICE", "SYS_ADMIN"}}}),
		"containers[0].securityContext.capabilities.add[1]", errdefs.ErrPermissionDenied, "may not add capability SYS_ADMIN: the only one allowed is NET_BIND_SERVICE"},
	{"add ALL", withSecurity(api.SecurityContext{Capabilities: &api.Capabilities{Add: []api.Capability{"ALL"}}}),
		"containers[0].securityContext.capabilities.add[0]", errdefs.ErrPermissionDenied, "capability ALL"},
	{"privilege escalation", withSecurity(api.SecurityContext{AllowPrivilegeEscalation: boolPtr(true)}),
		"containers[0].securityContext.allowPrivilegeEscalation", errdefs.ErrPermissionDenied, "no_new_privs"},
	{"second container privileged", func(s *api.PodSpec) {
		s.Containers = append(s.Containers, api.Container{Name: "side", Image: "busybox", SecurityContext: &api.SecurityContext{Privileged: boolPtr(true)}})
	}, "containers[1].securityContext.privileged", errdefs.ErrPermissionDenied, "privileged"},
	// Refused first for policy, even with fields not carried out.
	{"privileged and runAsUser", withSecurity(api.SecurityContext{Privileged: boolPtr(true), RunAsUser: new(int64)}),
		"containers[0].securityContext.privileged", errdefs.ErrPermissionDenied, "privileged"},

	// Valid, safe, but not carried out by the node agent yet.
	{"emptyDir", func(s *api.PodSpec) {
		s.Volumes = []api.Volume{{Name: "scratch", EmptyDir: &api.EmptyDirVolumeSource{}}}
		s.Containers[0].VolumeMounts = []api.VolumeMount{{Name: "scratch", MountPath: "/scratch"}}
	}, "volumes[0]", errdefs.ErrInvalidArgument, "not supported yet"},
	{"drop capabilities", withSecurity(api.SecurityContext{Capabilities: &api.Capabilities{Drop: []api.Capability{"ALL"}}}),
		"containers[0].securityContext.capabilities.drop", errdefs.ErrInvalidArgument, "not supported yet"},
	{"runAsUser", withSecurity(api.SecurityContext{RunAsUser: new(int64)}),
		"containers[0].securityContext.runAsUser", errdefs.ErrInvalidArgument, "not supported yet"},
	{"runAsNonRoot", withSecurity(api.SecurityContext{RunAsNonRoot: boolPtr(true)}),
		"containers[0].securityContext.runAsNonRoot", errdefs.ErrInvalidArgument, "not supported yet"},
	{"readOnlyRootFilesystem", withSecurity(api.SecurityContext{ReadOnlyRootFilesystem: boolPtr(true)}),
		"containers[0].securityContext.readOnlyRootFilesystem", errdefs.ErrInvalidArgument, "not supported yet"},
}

func securitySpec(mutate func(*api.PodSpec)) api.PodSpec {
	s := api.PodSpec{Containers: []api.Container{{Name: "c", Image: "busybox"}}}
	if mutate != nil {
		mutate(&s)
	}
	return s
}

func TestAdmitPodSecurity(t *testing.T) {
	for _, tc := range podSecurityCases {
		t.Run(tc.name, func(t *testing.T) {
			s := securitySpec(tc.mutate)
			wantFieldErr(t, "admitPodSecurity", admitPodSecurity(&s, "spec"), tc.class, "spec."+tc.field, tc.reason)
		})
	}
	t.Run("every refusal is listed", func(t *testing.T) {
		s := securitySpec(func(s *api.PodSpec) {
			s.HostNetwork, s.HostPID = true, true
			s.Containers[0].SecurityContext = &api.SecurityContext{Privileged: boolPtr(true)}
		})
		err := admitPodSecurity(&s, "spec.template.spec")
		for _, want := range []string{"spec.template.spec.hostNetwork: ", "spec.template.spec.hostPID: ", "spec.template.spec.containers[0].securityContext.privileged: "} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("admitPodSecurity = %q, lacks %q", err, want)
			}
		}
	})
	t.Run("safe settings pass", func(t *testing.T) {
		s := securitySpec(withSecurity(api.SecurityContext{
			Privileged: boolPtr(false), AllowPrivilegeEscalation: boolPtr(false), RunAsNonRoot: boolPtr(false), ReadOnlyRootFilesystem: boolPtr(false),
			Capabilities: &api.Capabilities{Add: []api.Capability{"NET_BIND_SERVICE"}},
		}))
		if err := admitPodSecurity(&s, "spec"); err != nil {
			t.Errorf("admitPodSecurity(safe settings) = %v, want nil", err)
		}
	})
}

// Through the API server on etcd: pods, deployments and replica sets of a
// tenant are refused whoever asks, updates of templates too, and nothing
// is stored.
func TestPodSecurityAdmission(t *testing.T) {
	admin, mk := testServer(t)
	ctx := t.Context()
	mustCreate(t, admin, &api.Tenant{Metadata: api.ObjectMeta{Name: "acme"}})
	tenantAdmin := mk(api.RoleAdmin, "acme", "")
	labels := map[string]string{"app": "x"}
	template := func(spec api.PodSpec) api.PodTemplateSpec {
		return api.PodTemplateSpec{Metadata: api.ObjectMeta{Labels: labels}, Spec: spec}
	}
	for _, tc := range podSecurityCases {
		t.Run(tc.name, func(t *testing.T) {
			spec := securitySpec(tc.mutate)
			for _, by := range []struct {
				who string
				cl  *client.Client
			}{{"cluster-admin", admin}, {"tenant admin", tenantAdmin}} {
				who, cl := by.who, by.cl
				pod := &api.Pod{Metadata: api.ObjectMeta{Name: "p", Tenant: "acme"}, Spec: spec}
				_, err := cl.Create(ctx, pod)
				wantFieldErr(t, who+" creating a pod", err, tc.class, "spec."+tc.field, tc.reason)
				dep := &api.Deployment{Metadata: api.ObjectMeta{Name: "d", Tenant: "acme"}, Spec: api.DeploymentSpec{Template: template(spec)}}
				_, err = cl.Create(ctx, dep)
				wantFieldErr(t, who+" creating a deployment", err, tc.class, "spec.template.spec."+tc.field, tc.reason)
				rs := &api.ReplicaSet{Metadata: api.ObjectMeta{Name: "r", Tenant: "acme"}, Spec: api.ReplicaSetSpec{Template: template(spec)}}
				_, err = cl.Create(ctx, rs)
				wantFieldErr(t, who+" creating a replica set", err, tc.class, "spec.template.spec."+tc.field, tc.reason)
			}
		})
	}

	// A safe deployment is admitted; changing its template to an unsafe
	// one is refused and leaves it as it was.
	safe := &api.Deployment{Metadata: api.ObjectMeta{Name: "safe", Tenant: "acme"}, Spec: api.DeploymentSpec{Template: template(securitySpec(nil))}}
	stored := mustCreate(t, tenantAdmin, safe).(*api.Deployment)
	stored.Spec.Template.Spec.Containers[0].SecurityContext = &api.SecurityContext{Privileged: boolPtr(true)}
	_, err := tenantAdmin.Update(ctx, stored)
	wantFieldErr(t, "update deployment to privileged", err, errdefs.ErrPermissionDenied, "spec.template.spec.containers[0].securityContext.privileged", "may not run privileged")

	for _, k := range []string{"pods", "deployments", "replicasets"} {
		list, err := admin.List(ctx, kindOf(t, k), "acme", client.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range list.Items {
			if d, ok := o.(*api.Deployment); ok && d.Metadata.Name == "safe" && d.Spec.Template.Spec.Containers[0].SecurityContext == nil {
				continue
			}
			t.Errorf("refused %s stored: %s", k, o.GetObjectMeta().Name)
		}
	}

	// The CVE-2024-21626 working directory is refused by validation.
	bad := newPod("acme", "fd-cwd")
	bad.Spec.Containers[0].WorkingDir = "/proc/self/fd/7"
	_, err = tenantAdmin.Create(ctx, bad)
	wantFieldErr(t, "pod with working dir /proc/self/fd/7", err, errdefs.ErrInvalidArgument, "spec.containers[0].workingDir", "CVE-2024-21626")
}
