package api

import (
	"fmt"
	"net"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/paddock-dev/paddock/core/errdefs"
)

// Limits on object sizes that validation enforces.
const (
	maxAnnotationBytes = 256 << 10
	maxDataBytes       = 1 << 20
)

// problems collects validation failures with their field paths.
type problems struct {
	list []*errdefs.Error
}

func (p *problems) add(field, format string, args ...any) {
	p.list = append(p.list, &errdefs.Error{Class: errdefs.ErrInvalidArgument, Field: field, Message: fmt.Sprintf(format, args...)})
}

// addAll records each message of a name check (IsDNS1123Label and friends)
// about value at field.
func (p *problems) addAll(field, value string, msgs []string) {
	for _, m := range msgs {
		p.add(field, "invalid value %q: %s", truncate(value, 64), m)
	}
}

func (p *problems) required(field, value string) bool {
	if value == "" {
		p.add(field, "required")
		return false
	}
	return true
}

// port checks a TCP or UDP port number.
func (p *problems) port(field string, port int32) {
	if port < 1 || port > 65535 {
		p.add(field, "invalid port %d: want 1-65535", port)
	}
}

func (p *problems) oneOf(field, value string, valid ...string) {
	if !slices.Contains(valid, value) {
		p.add(field, "unsupported value %q: want one of %s", value, strings.Join(valid, ", "))
	}
}

// err returns the collected problems as one error of class
// errdefs.ErrInvalidArgument, or nil. Its Field is the first problem's; its
// message lists them all.
func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	first := p.list[0]
	msg := first.Message
	for _, e := range p.list[1:] {
		msg += "; " + e.Error()
	}
	return &errdefs.Error{Class: errdefs.ErrInvalidArgument, Field: first.Field, Message: msg}
}

// Validate checks obj and returns an error of class
// errdefs.ErrInvalidArgument naming every invalid field, or nil.
func Validate(obj Object) error {
	k, ok := KindOf(obj)
	if !ok {
		return errdefs.New(errdefs.ErrBadRequest, fmt.Sprintf("unknown object type %T", obj))
	}
	var p problems
	validateMeta(&p, k, obj.GetObjectMeta())
	switch o := obj.(type) {
	case *Tenant:
		validateTenant(&p, o)
	case *Token:
		validateToken(&p, o)
	case *Node:
		validateNode(&p, o)
	case *RuntimeClass:
		validateRuntimeClass(&p, o)
	case *Pod:
		validatePodSpec(&p, "spec", &o.Spec)
	case *Deployment:
		validateReplicated(&p, o.Spec.Replicas, o.Spec.Selector, &o.Spec.Template)
		validateStrategy(&p, &o.Spec.Strategy)
		if o.Spec.RevisionHistoryLimit != nil && *o.Spec.RevisionHistoryLimit < 0 {
			p.add("spec.revisionHistoryLimit", "must be 0 or more")
		}
	case *ReplicaSet:
		validateReplicated(&p, o.Spec.Replicas, o.Spec.Selector, &o.Spec.Template)
	case *Service:
		validateService(&p, o)
	case *Endpoints:
		validateEndpoints(&p, o)
	case *NetworkPolicy:
		validateNetworkPolicy(&p, o)
	case *ServiceAllocation:
		r := o.Spec.Service
		p.oneOf("spec.service.kind", r.Kind, "Service")
		p.required("spec.service.tenant", r.Tenant)
		p.required("spec.service.name", r.Name)
		p.required("spec.service.uid", r.UID)
	case *Secret:
		validateData(&p, "data", len(o.Data), func(yield func(string, int) bool) {
			for k, v := range o.Data {
				if !yield(k, len(v)) {
					return
				}
			}
		})
	case *ConfigMap:
		validateData(&p, "data", len(o.Data)+len(o.BinaryData), func(yield func(string, int) bool) {
			for k, v := range o.Data {
				if !yield(k, len(v)) {
					return
				}
			}
			for k, v := range o.BinaryData {
				if _, dup := o.Data[k]; dup {
					p.add("binaryData["+k+"]", "key also in data; a key may be in only one of them")
				}
				if !yield(k, len(v)) {
					return
				}
			}
		})
	case *Lease:
		if o.Spec.LeaseDurationSeconds < 0 {
			p.add("spec.leaseDurationSeconds", "must be 0 or more")
		}
	case *Event:
		p.required("involvedObject.kind", o.InvolvedObject.Kind)
		p.required("involvedObject.name", o.InvolvedObject.Name)
		if o.Type != "" {
			p.oneOf("type", o.Type, "Normal", "Warning")
		}
	}
	return p.err()
}

// nameIsLabel lists the kinds whose names must be DNS labels because they
// become one part of a DNS name or a hostname.
var nameIsLabel = map[string]bool{"Tenant": true, "Service": true, "Token": true, "RuntimeClass": true}

func validateMeta(p *problems, k *Kind, m *ObjectMeta) {
	if p.required("metadata.name", m.Name) {
		if nameIsLabel[k.Kind] {
			p.addAll("metadata.name", m.Name, IsDNS1123Label(m.Name))
		} else {
			p.addAll("metadata.name", m.Name, IsDNS1123Subdomain(m.Name))
		}
	}
	if k.TenantScoped {
		if p.required("metadata.tenant", m.Tenant) {
			p.addAll("metadata.tenant", m.Tenant, IsDNS1123Label(m.Tenant))
		}
	} else if m.Tenant != "" {
		p.add("metadata.tenant", "must be empty: %s is cluster-scoped", k.Resource)
	}
	validateLabels(p, "metadata.labels", m.Labels)
	size := 0
	for key, v := range m.Annotations {
		p.addAll("metadata.annotations", key, IsLabelKey(key))
		size += len(key) + len(v)
	}
	if size > maxAnnotationBytes {
		p.add("metadata.annotations", "too large: %d bytes, the limit is %d", size, maxAnnotationBytes)
	}
	for i, r := range m.OwnerReferences {
		f := fmt.Sprintf("metadata.ownerReferences[%d]", i)
		p.required(f+".kind", r.Kind)
		p.required(f+".name", r.Name)
		p.required(f+".uid", r.UID)
	}
}

func validateLabels(p *problems, field string, labels map[string]string) {
	for k, v := range labels {
		p.addAll(field, k, IsLabelKey(k))
		p.addAll(field+"["+k+"]", v, IsLabelValue(v))
	}
}

func validateTenant(p *problems, t *Tenant) {
	p.oneOf("spec.isolation", string(t.Spec.Isolation), string(IsolationShared), string(IsolationSandboxed))
	if q := t.Spec.Quota; q != nil {
		if q.Pods != nil && *q.Pods < 0 {
			p.add("spec.quota.pods", "must be 0 or more")
		}
		nonNegative(p, "spec.quota.cpu", q.CPU)
		nonNegative(p, "spec.quota.memory", q.Memory)
	}
	for i, c := range t.Spec.AllowedRuntimeClasses {
		p.addAll(fmt.Sprintf("spec.allowedRuntimeClasses[%d]", i), c, IsDNS1123Label(c))
	}
	if c := t.Spec.DefaultRuntimeClass; c != "" {
		p.addAll("spec.defaultRuntimeClass", c, IsDNS1123Label(c))
		if len(t.Spec.AllowedRuntimeClasses) > 0 && !slices.Contains(t.Spec.AllowedRuntimeClasses, c) {
			p.add("spec.defaultRuntimeClass", "%q is not in spec.allowedRuntimeClasses (%s)", c, strings.Join(t.Spec.AllowedRuntimeClasses, ", "))
		}
	}
	validateLabels(p, "spec.nodeSelector", t.Spec.NodeSelector)
}

func nonNegative(p *problems, field string, q *Quantity) {
	if q != nil && q.MilliValue() < 0 {
		p.add(field, "must be 0 or more")
	}
}

func validateToken(p *problems, t *Token) {
	s := &t.Spec
	p.oneOf("spec.role", string(s.Role), string(RoleClusterAdmin), string(RoleAdmin), string(RoleEdit), string(RoleView), string(RoleNode))
	switch s.Role {
	case RoleAdmin, RoleEdit, RoleView:
		if p.required("spec.tenant", s.Tenant) {
			p.addAll("spec.tenant", s.Tenant, IsDNS1123Label(s.Tenant))
		}
		if s.Node != "" {
			p.add("spec.node", "must be empty for role %s", s.Role)
		}
	case RoleNode:
		if p.required("spec.node", s.Node) {
			p.addAll("spec.node", s.Node, IsDNS1123Subdomain(s.Node))
		}
		if s.Tenant != "" {
			p.add("spec.tenant", "must be empty for role node")
		}
	case RoleClusterAdmin:
		if s.Tenant != "" || s.Node != "" {
			p.add("spec.tenant", "must be empty for role cluster-admin")
		}
	}
}

var cidrRe = regexp.MustCompile(`^[0-9a-fA-F.:]+/\d+$`)

func validateNode(p *problems, n *Node) {
	for i, t := range n.Spec.Taints {
		f := fmt.Sprintf("spec.taints[%d]", i)
		if p.required(f+".key", t.Key) {
			p.addAll(f+".key", t.Key, IsLabelKey(t.Key))
		}
		p.addAll(f+".value", t.Value, IsLabelValue(t.Value))
		p.oneOf(f+".effect", string(t.Effect), string(TaintNoSchedule), string(TaintPreferNoSchedule), string(TaintNoExecute))
	}
	if c := n.Spec.PodCIDR; c != "" {
		if _, err := netip.ParsePrefix(c); err != nil || !cidrRe.MatchString(c) {
			p.add("spec.podCIDR", "invalid CIDR %q: want an address range such as 10.42.1.0/24", c)
		}
	}
	validateResourceList(p, "status.capacity", n.Status.Capacity, true)
	validateResourceList(p, "status.allocatable", n.Status.Allocatable, true)
	if e := n.Status.DaemonEndpoint; e != (NodeDaemonEndpoint{}) {
		p.port("status.daemonEndpoint.port", e.Port)
		if !sha256HexRe.MatchString(e.CertSHA256) {
			p.add("status.daemonEndpoint.certSHA256", "invalid fingerprint %q: want the certificate's SHA-256 as 64 lower-case hex digits", e.CertSHA256)
		}
	}
}

var sha256HexRe = regexp.MustCompile(`^[0-9a-f]{64}$`)

func validateRuntimeClass(p *problems, r *RuntimeClass) {
	if p.required("spec.plugin", r.Spec.Plugin) {
		p.addAll("spec.plugin", r.Spec.Plugin, IsDNS1123Label(r.Spec.Plugin))
	}
	p.oneOf("spec.isolation", string(r.Spec.Isolation), string(IsolationNamespace), string(IsolationUserspaceKernel), string(IsolationVM))
}

func validatePodSpec(p *problems, field string, s *PodSpec) {
	if len(s.Containers) == 0 {
		p.add(field+".containers", "required: a pod runs at least one container")
	}
	volumes := validateVolumes(p, field+".volumes", s.Volumes)
	names := map[string]bool{}
	hostPorts := map[string]bool{}
	for i := range s.Containers {
		validateContainer(p, fmt.Sprintf("%s.containers[%d]", field, i), &s.Containers[i], names, hostPorts, volumes)
	}
	p.oneOf(field+".restartPolicy", string(s.RestartPolicy), string(RestartAlways), string(RestartOnFailure), string(RestartNever))
	if c := s.RuntimeClassName; c != "" {
		p.addAll(field+".runtimeClassName", c, IsDNS1123Label(c))
	}
	validateLabels(p, field+".nodeSelector", s.NodeSelector)
	if s.NodeName != "" {
		p.addAll(field+".nodeName", s.NodeName, IsDNS1123Subdomain(s.NodeName))
	}
	if s.Hostname != "" {
		p.addAll(field+".hostname", s.Hostname, IsDNS1123Label(s.Hostname))
	}
	if g := s.TerminationGracePeriodSeconds; g != nil && *g < 0 {
		p.add(field+".terminationGracePeriodSeconds", "must be 0 or more, got %d", *g)
	}
	for i, t := range s.Tolerations {
		f := fmt.Sprintf("%s.tolerations[%d]", field, i)
		p.oneOf(f+".operator", string(t.Operator), string(TolerationEqual), string(TolerationExists))
		if t.Operator == TolerationExists && t.Value != "" {
			p.add(f+".value", "must be empty when operator is Exists")
		}
		if t.Key == "" && t.Operator != TolerationExists {
			p.add(f+".operator", "must be Exists when key is empty")
		}
		if t.Effect != "" {
			p.oneOf(f+".effect", string(t.Effect), string(TaintNoSchedule), string(TaintPreferNoSchedule), string(TaintNoExecute))
		}
	}
}

func validateContainer(p *problems, f string, c *Container, names, hostPorts, volumes map[string]bool) {
	if p.required(f+".name", c.Name) {
		p.addAll(f+".name", c.Name, IsDNS1123Label(c.Name))
		if names[c.Name] {
			p.add(f+".name", "duplicate container name %q", c.Name)
		}
		names[c.Name] = true
	}
	if p.required(f+".image", c.Image) && strings.ContainsAny(c.Image, " \t\n") {
		p.add(f+".image", "invalid image %q: must not contain white space", c.Image)
	}
	p.oneOf(f+".imagePullPolicy", string(c.ImagePullPolicy), string(PullAlways), string(PullIfNotPresent), string(PullNever))
	for i, e := range c.Env {
		ef := fmt.Sprintf("%s.env[%d]", f, i)
		if p.required(ef+".name", e.Name) {
			p.addAll(ef+".name", e.Name, IsEnvVarName(e.Name))
		}
		if e.ValueFrom != nil {
			if e.Value != "" {
				p.add(ef+".valueFrom", "may not be set together with value")
			}
			refs := 0
			for _, ref := range []struct {
				name string
				sel  *KeySelector
			}{{"secretKeyRef", e.ValueFrom.SecretKeyRef}, {"configMapKeyRef", e.ValueFrom.ConfigMapKeyRef}} {
				if ref.sel == nil {
					continue
				}
				refs++
				rf := ef + ".valueFrom." + ref.name
				if p.required(rf+".name", ref.sel.Name) {
					p.addAll(rf+".name", ref.sel.Name, IsDNS1123Subdomain(ref.sel.Name))
				}
				p.required(rf+".key", ref.sel.Key)
			}
			if refs != 1 {
				p.add(ef+".valueFrom", "set exactly one of secretKeyRef, configMapKeyRef")
			}
		}
	}
	portNames := map[string]bool{}
	for i, port := range c.Ports {
		pf := fmt.Sprintf("%s.ports[%d]", f, i)
		p.addAll(pf+".containerPort", fmt.Sprint(port.ContainerPort), IsPortNumber(port.ContainerPort))
		if port.HostPort != 0 {
			p.addAll(pf+".hostPort", fmt.Sprint(port.HostPort), IsPortNumber(port.HostPort))
			key := fmt.Sprintf("%s/%d", port.Protocol, port.HostPort)
			if hostPorts[key] {
				p.add(pf+".hostPort", "duplicate host port %d/%s", port.HostPort, port.Protocol)
			}
			hostPorts[key] = true
		}
		p.oneOf(pf+".protocol", string(port.Protocol), string(ProtocolTCP), string(ProtocolUDP))
		if port.Name != "" {
			p.addAll(pf+".name", port.Name, IsDNS1123Label(port.Name))
			if portNames[port.Name] {
				p.add(pf+".name", "duplicate port name %q", port.Name)
			}
			portNames[port.Name] = true
		}
	}
	validateResources(p, f+".resources", &c.Resources)
	validateProbe(p, f+".livenessProbe", c.LivenessProbe)
	validateProbe(p, f+".readinessProbe", c.ReadinessProbe)
	if c.WorkingDir != "" {
		if msg := checkWorkingDir(c.WorkingDir); msg != "" {
			p.add(f+".workingDir", "invalid value %q: %s", truncate(c.WorkingDir, 64), msg)
		}
	}
	validateVolumeMounts(p, f+".volumeMounts", c.VolumeMounts, volumes)
	validateSecurityContext(p, f+".securityContext", c.SecurityContext)
}

// checkWorkingDir says what is wrong with a container's working directory,
// or "". A working directory in /proc is refused whatever the runtime:
// /proc/self/fd/N can name a directory of the host through a descriptor
// the runtime leaked into the container (CVE-2024-21626), and no program
// needs to start there.
func checkWorkingDir(dir string) string {
	if !path.IsAbs(dir) {
		return "must be an absolute path"
	}
	if underProc(dir) {
		return "a working directory in /proc is refused: /proc/self/fd/N can reach the node's files (CVE-2024-21626)"
	}
	return ""
}

// underProc reports whether the absolute path p is /proc or lies in it,
// after resolving "." and "..".
func underProc(p string) bool {
	clean := path.Clean(p)
	return clean == "/proc" || strings.HasPrefix(clean, "/proc/")
}

// validateVolumes checks a pod's volumes and returns their names.
func validateVolumes(p *problems, field string, vols []Volume) map[string]bool {
	names := make(map[string]bool, len(vols))
	for i, v := range vols {
		f := fmt.Sprintf("%s[%d]", field, i)
		if p.required(f+".name", v.Name) {
			p.addAll(f+".name", v.Name, IsDNS1123Label(v.Name))
			if names[v.Name] {
				p.add(f+".name", "duplicate volume name %q", v.Name)
			}
			names[v.Name] = true
		}
		sources := 0
		if v.EmptyDir != nil {
			sources++
		}
		if v.HostPath != nil {
			sources++
			if p.required(f+".hostPath.path", v.HostPath.Path) && !path.IsAbs(v.HostPath.Path) {
				p.add(f+".hostPath.path", "invalid value %q: must be an absolute path", truncate(v.HostPath.Path, 64))
			}
		}
		if sources != 1 {
			p.add(f, "set exactly one of emptyDir, hostPath")
		}
	}
	return names
}

// validateVolumeMounts checks a container's mounts against the pod's
// volumes.
func validateVolumeMounts(p *problems, field string, mounts []VolumeMount, volumes map[string]bool) {
	paths := map[string]bool{}
	for i, m := range mounts {
		f := fmt.Sprintf("%s[%d]", field, i)
		if p.required(f+".name", m.Name) && !volumes[m.Name] {
			p.add(f+".name", "no volume %q in spec.volumes", m.Name)
		}
		if !p.required(f+".mountPath", m.MountPath) {
			continue
		}
		clean := path.Clean(m.MountPath)
		switch {
		case !path.IsAbs(m.MountPath):
			p.add(f+".mountPath", "invalid value %q: must be an absolute path", truncate(m.MountPath, 64))
		case clean == "/":
			p.add(f+".mountPath", "may not be /: a volume may not replace the container's root")
		case underProc(clean) || clean == "/sys" || strings.HasPrefix(clean, "/sys/"):
			p.add(f+".mountPath", "invalid value %q: a volume may not cover /proc or /sys", truncate(m.MountPath, 64))
		case paths[clean]:
			p.add(f+".mountPath", "duplicate mount path %q", clean)
		}
		paths[clean] = true
	}
}

// linuxCapabilities are the capability names a security context may use,
// without the CAP_ prefix (capabilities(7)).
var linuxCapabilities = []Capability{
	"AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE", "CHOWN",
	"DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER", "KILL", "LEASE",
	"LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN", "NET_BIND_SERVICE",
	"NET_BROADCAST", "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYSLOG",
	"SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT", "SYS_MODULE", "SYS_NICE", "SYS_PACCT", "SYS_PTRACE",
	"SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "WAKE_ALARM",
}

// maxUID is the largest user id a container may run as (2^32-2; -1 is
// "no user").
const maxUID = 1<<32 - 2

func validateSecurityContext(p *problems, f string, sc *SecurityContext) {
	if sc == nil {
		return
	}
	if c := sc.Capabilities; c != nil {
		for _, list := range []struct {
			name string
			caps []Capability
		}{{"add", c.Add}, {"drop", c.Drop}} {
			for i, name := range list.caps {
				cf := fmt.Sprintf("%s.capabilities.%s[%d]", f, list.name, i)
				switch {
				case name == "ALL" || slices.Contains(linuxCapabilities, name):
				case strings.HasPrefix(string(name), "CAP_"):
					p.add(cf, "invalid value %q: write capabilities without the CAP_ prefix, as %s", truncate(string(name), 64), strings.TrimPrefix(string(name), "CAP_"))
				default:
					p.add(cf, "unknown capability %q: want ALL or a name from capabilities(7) without CAP_, such as NET_BIND_SERVICE", truncate(string(name), 64))
				}
			}
		}
	}
	if u := sc.RunAsUser; u != nil && (*u < 0 || *u > maxUID) {
		p.add(f+".runAsUser", "invalid value %d: want a user id from 0 to %d", *u, int64(maxUID))
	}
	if isTrue(sc.RunAsNonRoot) && sc.RunAsUser != nil && *sc.RunAsUser == 0 {
		p.add(f+".runAsNonRoot", "contradicts runAsUser 0: set a non-zero runAsUser or drop runAsNonRoot")
	}
	if isTrue(sc.Privileged) && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		p.add(f+".allowPrivilegeEscalation", "may not be false when privileged is true: a privileged container can always escalate")
	}
}

// isTrue reports whether an optional flag is set to true.
func isTrue(b *bool) bool { return b != nil && *b }

func validateResourceList(p *problems, field string, l ResourceList, allowPods bool) {
	for name, q := range l {
		switch {
		case name == ResourceCPU, name == ResourceMemory, name == ResourcePods && allowPods:
		default:
			want := "cpu, memory"
			if allowPods {
				want += ", pods"
			}
			p.add(field, "unsupported resource %q: want %s", name, want)
			continue
		}
		if q.MilliValue() < 0 {
			p.add(field+"."+string(name), "must be 0 or more, got %s", q.String())
		}
	}
}

func validateResources(p *problems, f string, r *ResourceRequirements) {
	validateResourceList(p, f+".limits", r.Limits, false)
	validateResourceList(p, f+".requests", r.Requests, false)
	for name, req := range r.Requests {
		if lim, ok := r.Limits[name]; ok && req.Cmp(lim) > 0 {
			p.add(f+".requests."+string(name), "request %s is more than the limit %s: a limit must be at least the request", req.String(), lim.String())
		}
	}
}

func validateProbe(p *problems, f string, pr *Probe) {
	if pr == nil {
		return
	}
	handlers := 0
	if pr.Exec != nil {
		handlers++
		if len(pr.Exec.Command) == 0 {
			p.add(f+".exec.command", "required")
		}
	}
	if pr.HTTPGet != nil {
		handlers++
		p.addAll(f+".httpGet.port", fmt.Sprint(pr.HTTPGet.Port), IsPortNumber(pr.HTTPGet.Port))
		p.oneOf(f+".httpGet.scheme", pr.HTTPGet.Scheme, "HTTP", "HTTPS")
		if !strings.HasPrefix(pr.HTTPGet.Path, "/") {
			p.add(f+".httpGet.path", "must start with /")
		}
	}
	if pr.TCPSocket != nil {
		handlers++
		p.addAll(f+".tcpSocket.port", fmt.Sprint(pr.TCPSocket.Port), IsPortNumber(pr.TCPSocket.Port))
	}
	if handlers != 1 {
		p.add(f, "set exactly one of exec, httpGet, tcpSocket")
	}
	for _, n := range []struct {
		name string
		v    int32
		min  int32
	}{
		{"initialDelaySeconds", pr.InitialDelaySeconds, 0},
		{"periodSeconds", pr.PeriodSeconds, 1},
		{"timeoutSeconds", pr.TimeoutSeconds, 1},
		{"successThreshold", pr.SuccessThreshold, 1},
		{"failureThreshold", pr.FailureThreshold, 1},
	} {
		if n.v < n.min {
			p.add(f+"."+n.name, "must be %d or more, got %d", n.min, n.v)
		}
	}
}

func validateReplicated(p *problems, replicas *int32, sel *LabelSelector, tmpl *PodTemplateSpec) {
	if replicas != nil && *replicas < 0 {
		p.add("spec.replicas", "must be 0 or more, got %d", *replicas)
	}
	if sel == nil || len(sel.MatchLabels) == 0 {
		p.add("spec.selector.matchLabels", "required: select the pods by at least one label")
	} else {
		validateLabels(p, "spec.selector.matchLabels", sel.MatchLabels)
		for k, v := range sel.MatchLabels {
			if tmpl.Metadata.Labels[k] != v {
				p.add("spec.template.metadata.labels", "must include the selector's %s=%s so that the pods are selected", k, v)
			}
		}
	}
	validateLabels(p, "spec.template.metadata.labels", tmpl.Metadata.Labels)
	validatePodSpec(p, "spec.template.spec", &tmpl.Spec)
}

func validateStrategy(p *problems, s *DeploymentStrategy) {
	p.oneOf("spec.strategy.type", string(s.Type), string(RollingUpdate), string(Recreate))
	if s.Type == Recreate && s.RollingUpdate != nil {
		p.add("spec.strategy.rollingUpdate", "must be empty when type is Recreate")
	}
	if ru := s.RollingUpdate; ru != nil {
		surge, unavail := int32(0), int32(0)
		for _, v := range []struct {
			name string
			val  *IntOrString
			out  *int32
		}{{"maxSurge", ru.MaxSurge, &surge}, {"maxUnavailable", ru.MaxUnavailable, &unavail}} {
			if v.val == nil {
				continue
			}
			n, ok := v.val.Scaled(100, true)
			if !ok {
				p.add("spec.strategy.rollingUpdate."+v.name, "invalid value %q: want a whole number or a percentage such as 25%%", v.val.String())
			}
			*v.out = n
		}
		if surge == 0 && unavail == 0 && ru.MaxSurge != nil && ru.MaxUnavailable != nil {
			p.add("spec.strategy.rollingUpdate", "maxSurge and maxUnavailable may not both be 0: the rollout could never progress")
		}
	}
}

func validateService(p *problems, s *Service) {
	p.oneOf("spec.type", string(s.Spec.Type), string(ServiceClusterIP), string(ServiceNodePort))
	validateLabels(p, "spec.selector", s.Spec.Selector)
	if ip := s.Spec.ClusterIP; ip != "" && ip != "None" && net.ParseIP(ip) == nil {
		p.add("spec.clusterIP", "invalid IP %q: want an IP address, None or empty", ip)
	}
	if len(s.Spec.Ports) == 0 {
		p.add("spec.ports", "required: a service has at least one port")
	}
	names := map[string]bool{}
	seen := map[string]bool{}
	for i, port := range s.Spec.Ports {
		f := fmt.Sprintf("spec.ports[%d]", i)
		p.addAll(f+".port", fmt.Sprint(port.Port), IsPortNumber(port.Port))
		if port.TargetPort != 0 {
			p.addAll(f+".targetPort", fmt.Sprint(port.TargetPort), IsPortNumber(port.TargetPort))
		}
		p.oneOf(f+".protocol", string(port.Protocol), string(ProtocolTCP), string(ProtocolUDP))
		if len(s.Spec.Ports) > 1 && port.Name == "" {
			p.add(f+".name", "required when a service has more than one port")
		}
		if port.Name != "" {
			p.addAll(f+".name", port.Name, IsDNS1123Label(port.Name))
			if names[port.Name] {
				p.add(f+".name", "duplicate port name %q", port.Name)
			}
			names[port.Name] = true
		}
		key := fmt.Sprintf("%d/%s", port.Port, port.Protocol)
		if seen[key] {
			p.add(f+".port", "duplicate port %s", key)
		}
		seen[key] = true
		// The API server checks node ports against its configured range.
		if port.NodePort != 0 {
			if s.Spec.Type != ServiceNodePort {
				p.add(f+".nodePort", "may be set only for type NodePort")
			} else {
				p.port(f+".nodePort", port.NodePort)
			}
		}
	}
}

func validateEndpoints(p *problems, e *Endpoints) {
	for i, s := range e.Subsets {
		for j, list := range [][]EndpointAddress{s.Addresses, s.NotReadyAddresses} {
			name := []string{"addresses", "notReadyAddresses"}[j]
			for k, a := range list {
				if net.ParseIP(a.IP) == nil {
					p.add(fmt.Sprintf("subsets[%d].%s[%d].ip", i, name, k), "invalid IP %q", a.IP)
				}
			}
		}
		for k, port := range s.Ports {
			p.addAll(fmt.Sprintf("subsets[%d].ports[%d].port", i, k), fmt.Sprint(port.Port), IsPortNumber(port.Port))
		}
	}
}

func validateNetworkPolicy(p *problems, n *NetworkPolicy) {
	validateLabels(p, "spec.podSelector.matchLabels", n.Spec.PodSelector.MatchLabels)
	for i, rule := range n.Spec.Ingress {
		f := fmt.Sprintf("spec.ingress[%d]", i)
		for j, peer := range rule.From {
			validateLabels(p, fmt.Sprintf("%s.from[%d].podSelector.matchLabels", f, j), peer.PodSelector.MatchLabels)
		}
		for j, port := range rule.Ports {
			pf := fmt.Sprintf("%s.ports[%d]", f, j)
			p.oneOf(pf+".protocol", string(port.Protocol), string(ProtocolTCP), string(ProtocolUDP))
			if port.Port != 0 {
				p.port(pf+".port", port.Port)
			}
		}
	}
}

var dataKeyRe = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)

// validateData checks the keys and the total size of a secret's or config
// map's data; entries yields each key and its value's size.
func validateData(p *problems, field string, n int, entries func(yield func(string, int) bool)) {
	size := 0
	for key, l := range entries {
		if !dataKeyRe.MatchString(key) || len(key) > 253 {
			p.add(field+"["+key+"]", "invalid key: use letters, digits, '-', '_' and '.', at most 253")
		}
		size += len(key) + l
	}
	if size > maxDataBytes {
		p.add(field, "too large: %d bytes in %d keys, the limit is %d", size, n, maxDataBytes)
	}
}

// ValidateUpdate checks that an update from old to obj changes only what
// may change. Both must be of the same kind; Validate(obj) is checked too.
func ValidateUpdate(obj, old Object) error {
	if err := Validate(obj); err != nil {
		return err
	}
	var p problems
	switch o := obj.(type) {
	case *Pod:
		was := old.(*Pod)
		if o.Spec.NodeName != was.Spec.NodeName && was.Spec.NodeName != "" {
			p.add("spec.nodeName", "immutable once the pod is bound (was %q)", was.Spec.NodeName)
		}
		a, b := Clone(o), Clone(was)
		for i := range a.Spec.Containers {
			if i < len(b.Spec.Containers) {
				a.Spec.Containers[i].Image = b.Spec.Containers[i].Image
			}
		}
		a.Spec.NodeName = b.Spec.NodeName
		if !jsonEqual(a.Spec, b.Spec) {
			p.add("spec", "a pod's spec may not change except containers[*].image; delete and re-create the pod, or use a Deployment")
		}
	case *Node:
		if was := old.(*Node).Spec.PodCIDR; was != "" && o.Spec.PodCIDR != was {
			p.add("spec.podCIDR", "immutable once set (was %q): delete and re-register the node to give it another range", was)
		}
	case *Token:
		if !jsonEqual(o.Spec, old.(*Token).Spec) {
			p.add("spec", "a token's spec may not change; create a new token")
		}
	case *Service:
		was := old.(*Service)
		if was.Spec.ClusterIP != "" && o.Spec.ClusterIP != was.Spec.ClusterIP {
			p.add("spec.clusterIP", "immutable once allocated (was %q)", was.Spec.ClusterIP)
		}
	case *Deployment:
		if !jsonEqual(o.Spec.Selector, old.(*Deployment).Spec.Selector) {
			p.add("spec.selector", "immutable; create a new deployment to select other pods")
		}
	case *ReplicaSet:
		if !jsonEqual(o.Spec.Selector, old.(*ReplicaSet).Spec.Selector) {
			p.add("spec.selector", "immutable; create a new replica set to select other pods")
		}
	}
	return p.err()
}
