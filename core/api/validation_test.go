package api

import (
	"errors"
	"strings"
	"testing"

	"github.com/paddock-dev/paddock/core/errdefs"
)

// securityPod is a valid pod that mutate changes.
func securityPod(mutate func(*Pod)) *Pod {
	p := &Pod{
		Metadata: ObjectMeta{Name: "p", Tenant: "t"},
		Spec:     PodSpec{Containers: []Container{{Name: "c", Image: "busybox"}}},
	}
	Default(p)
	mutate(p)
	return p
}

func TestValidatePodSecurityFields(t *testing.T) {
	ctx := func(p *Pod) *SecurityContext {
		if p.Spec.Containers[0].SecurityContext == nil {
			p.Spec.Containers[0].SecurityContext = &SecurityContext{}
		}
		return p.Spec.Containers[0].SecurityContext
	}
	cases := []struct {
		name   string
		mutate func(*Pod)
		field  string // "" = valid
		msg    string
	}{
		{"plain", func(*Pod) {}, "", ""},
		{"workingDir absolute", func(p *Pod) { p.Spec.Containers[0].WorkingDir = "/srv/app" }, "", ""},
		// CVE-2024-21626: a working directory of /proc/self/fd/N is a
		// directory of the host when runc leaks a descriptor.
		{"workingDir /proc/self/fd", func(p *Pod) { p.Spec.Containers[0].WorkingDir = "/proc/self/fd/7" }, "spec.containers[0].workingDir", "CVE-2024-21626"},
		{"workingDir /proc", func(p *Pod) { p.Spec.Containers[0].WorkingDir = "/proc" }, "spec.containers[0].workingDir", "/proc"},
		{"workingDir dot-dot into /proc", func(p *Pod) { p.Spec.Containers[0].WorkingDir = "/tmp/../proc/1/cwd" }, "spec.containers[0].workingDir", "/proc"},
		{"workingDir thread-self", func(p *Pod) { p.Spec.Containers[0].WorkingDir = "/proc/thread-self/fd/3" }, "spec.containers[0].workingDir", "/proc"},
		{"workingDir relative", func(p *Pod) { p.Spec.Containers[0].WorkingDir = "proc/self/fd/7" }, "spec.containers[0].workingDir", "absolute"},
		{"workingDir /process is not /proc", func(p *Pod) { p.Spec.Containers[0].WorkingDir = "/process" }, "", ""},
		{"second container named", func(p *Pod) {
			p.Spec.Containers = append(p.Spec.Containers, Container{Name: "d", Image: "busybox", ImagePullPolicy: PullIfNotPresent, WorkingDir: "/proc/self/cwd"})
		}, "spec.containers[1].workingDir", "/proc"},

		{"emptyDir mounted", func(p *Pod) {
			p.Spec.Volumes = []Volume{{Name: "scratch", EmptyDir: &EmptyDirVolumeSource{}}}
			p.Spec.Containers[0].VolumeMounts = []VolumeMount{{Name: "scratch", MountPath: "/scratch", ReadOnly: true}}
		}, "", ""},
		{"hostPath is valid shape", func(p *Pod) { p.Spec.Volumes = []Volume{{Name: "h", HostPath: &HostPathVolumeSource{Path: "/etc"}}} }, "", ""},
		{"volume without source", func(p *Pod) { p.Spec.Volumes = []Volume{{Name: "v"}} }, "spec.volumes[0]", "exactly one of emptyDir, hostPath"},
		{"volume with two sources", func(p *Pod) {
			p.Spec.Volumes = []Volume{{Name: "v", EmptyDir: &EmptyDirVolumeSource{}, HostPath: &HostPathVolumeSource{Path: "/"}}}
		}, "spec.volumes[0]", "exactly one"},
		{"volume name", func(p *Pod) { p.Spec.Volumes = []Volume{{Name: "Bad_Name", EmptyDir: &EmptyDirVolumeSource{}}} }, "spec.volumes[0].name", "Bad_Name"},
		{"duplicate volume", func(p *Pod) {
			p.Spec.Volumes = []Volume{{Name: "v", EmptyDir: &EmptyDirVolumeSource{}}, {Name: "v", EmptyDir: &EmptyDirVolumeSource{}}}
		}, "spec.volumes[1].name", "duplicate"},
		{"hostPath relative", func(p *Pod) { p.Spec.Volumes = []Volume{{Name: "h", HostPath: &HostPathVolumeSource{Path: "etc"}}} }, "spec.volumes[0].hostPath.path", "absolute"},
		{"hostPath empty", func(p *Pod) { p.Spec.Volumes = []Volume{{Name: "h", HostPath: &HostPathVolumeSource{}}} }, "spec.volumes[0].hostPath.path", "required"},
		{"mount of no volume", func(p *Pod) {
			p.Spec.Containers[0].VolumeMounts = []VolumeMount{{Name: "ghost", MountPath: "/g"}}
		}, "spec.containers[0].volumeMounts[0].name", `no volume "ghost"`},
		{"mount over /proc", func(p *Pod) {
			p.Spec.Volumes = []Volume{{Name: "v", EmptyDir: &EmptyDirVolumeSource{}}}
			p.Spec.Containers[0].VolumeMounts = []VolumeMount{{Name: "v", MountPath: "/proc/sys"}}
		}, "spec.containers[0].volumeMounts[0].mountPath", "/proc or /sys"},
		{"mount over root", func(p *Pod) {
			p.Spec.Volumes = []Volume{{Name: "v", EmptyDir: &EmptyDirVolumeSource{}}}
			p.Spec.Containers[0].VolumeMounts = []VolumeMount{{Name: "v", MountPath: "/a/.."}}
		}, "spec.containers[0].volumeMounts[0].mountPath", "may not be /"},
		{"mount relative", func(p *Pod) {
			p.Spec.Volumes = []Volume{{Name: "v", EmptyDir: &EmptyDirVolumeSource{}}}
			p.Spec.Containers[0].VolumeMounts = []VolumeMount{{Name: "v", MountPath: "data"}}
		}, "spec.containers[0].volumeMounts[0].mountPath", "absolute"},
		{"mount path twice", func(p *Pod) {
			p.Spec.Volumes = []Volume{{Name: "v", EmptyDir: &EmptyDirVolumeSource{}}, {Name: "w", EmptyDir: &EmptyDirVolumeSource{}}}
			p.Spec.Containers[0].VolumeMounts = []VolumeMount{{Name: "v", MountPath: "/d"}, {Name: "w", MountPath: "/d/"}}
		}, "spec.containers[0].volumeMounts[1].mountPath", "duplicate"},

		{"capabilities known", func(p *Pod) {
			ctx(p).Capabilities = &Capabilities{Add: []Capability{"NET_BIND_SERVICE", "SYS_ADMIN"}, Drop: []Capability{"ALL"}}
		}, "", ""},
		{"capability with CAP_ prefix", func(p *Pod) { ctx(p).Capabilities = &Capabilities{Add: []Capability{"CAP_NET_ADMIN"}} },
			"spec.containers[0].securityContext.capabilities.add[0]", "without the CAP_ prefix, as NET_ADMIN"},
		{"unknown capability", func(p *Pod) { ctx(p).Capabilities = &Capabilities{Drop: []Capability{"NET_RAW", "net_raw"}} },
			"spec.containers[0].securityContext.capabilities.drop[1]", "unknown capability"},
		{"runAsUser negative", func(p *Pod) { ctx(p).RunAsUser = ptr[int64](-1) }, "spec.containers[0].securityContext.runAsUser", "user id"},
		{"runAsUser too large", func(p *Pod) { ctx(p).RunAsUser = ptr[int64](1 << 32) }, "spec.containers[0].securityContext.runAsUser", "user id"},
		{"runAsNonRoot as root", func(p *Pod) { ctx(p).RunAsNonRoot, ctx(p).RunAsUser = ptr(true), ptr[int64](0) },
			"spec.containers[0].securityContext.runAsNonRoot", "runAsUser 0"},
		{"privileged without escalation", func(p *Pod) { ctx(p).Privileged, ctx(p).AllowPrivilegeEscalation = ptr(true), ptr(false) },
			"spec.containers[0].securityContext.allowPrivilegeEscalation", "privileged"},
		{"all flags shaped right", func(p *Pod) {
			p.Spec.HostNetwork, p.Spec.HostPID, p.Spec.HostIPC = true, true, true
			*ctx(p) = SecurityContext{Privileged: ptr(true), RunAsUser: ptr[int64](1000), RunAsNonRoot: ptr(true), ReadOnlyRootFilesystem: ptr(true)}
		}, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(securityPod(tc.mutate))
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) || errdefs.FieldOf(err) != tc.field || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Validate = %v (field %q), want 422 on %s mentioning %q", err, errdefs.FieldOf(err), tc.field, tc.msg)
			}
		})
	}
}

// The template of a deployment is validated like a pod, with its path.
func TestValidateTemplateWorkingDir(t *testing.T) {
	d := &Deployment{
		Metadata: ObjectMeta{Name: "d", Tenant: "t"},
		Spec: DeploymentSpec{Template: PodTemplateSpec{
			Metadata: ObjectMeta{Labels: map[string]string{"app": "d"}},
			Spec:     PodSpec{Containers: []Container{{Name: "c", Image: "busybox", WorkingDir: "/proc/self/fd/9"}}},
		}},
	}
	Default(d)
	err := Validate(d)
	if want := "spec.template.spec.containers[0].workingDir"; errdefs.FieldOf(err) != want {
		t.Errorf("Validate(deployment) = %v, want a problem at %s", err, want)
	}
}

// The new fields decode strictly from a Kubernetes-shaped manifest.
func TestDecodeSecurityFields(t *testing.T) {
	manifest := `apiVersion: paddock.dev/v1
kind: Pod
metadata: {name: p}
spec:
  hostNetwork: true
  hostPID: true
  hostIPC: true
  volumes:
  - name: host
    hostPath: {path: /etc}
  - name: scratch
    emptyDir: {}
  containers:
  - name: c
    image: busybox
    volumeMounts:
    - {name: scratch, mountPath: /scratch, readOnly: true}
    securityContext:
      privileged: true
      allowPrivilegeEscalation: true
      capabilities: {add: [SYS_ADMIN], drop: [ALL]}
      runAsUser: 1000
      runAsNonRoot: true
      readOnlyRootFilesystem: true
`
	obj, err := Decode([]byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	s := obj.(*Pod).Spec
	c := s.Containers[0]
	sc := c.SecurityContext
	if !s.HostNetwork || !s.HostPID || !s.HostIPC || len(s.Volumes) != 2 || s.Volumes[0].HostPath.Path != "/etc" || s.Volumes[1].EmptyDir == nil ||
		len(c.VolumeMounts) != 1 || !c.VolumeMounts[0].ReadOnly || sc == nil || !isTrue(sc.Privileged) || !isTrue(sc.AllowPrivilegeEscalation) ||
		sc.Capabilities.Add[0] != "SYS_ADMIN" || sc.Capabilities.Drop[0] != "ALL" || *sc.RunAsUser != 1000 || !isTrue(sc.RunAsNonRoot) || !isTrue(sc.ReadOnlyRootFilesystem) {
		t.Errorf("decoded spec = %+v, container %+v, security context %+v", s, c, sc)
	}
	_, err = Decode([]byte(strings.Replace(manifest, "emptyDir: {}", "emptyDir: {medium: Memory}", 1)))
	if !errors.Is(err, errdefs.ErrBadRequest) || errdefs.FieldOf(err) != "spec.volumes[1].emptyDir.medium" {
		t.Errorf("Decode(emptyDir.medium) = %v, want 400 on spec.volumes[1].emptyDir.medium", err)
	}
}
