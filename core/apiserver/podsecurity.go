package apiserver

import (
	"fmt"
	"slices"
	"strings"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// Pod security admission. Every pod is a tenant's, whoever creates it, so
// every pod (and every deployment's and replica set's template) is held to
// the same rule: nothing that would give the pod the node. A second check
// refuses what the node agent does not carry out yet, so that no field is
// accepted and then silently ignored.

// allowedAddCapabilities are the capabilities a pod may add. They are in
// every runtime's default set already, so adding them changes nothing and
// is harmless; anything else widens what a container may do to the node.
var allowedAddCapabilities = []api.Capability{"NET_BIND_SERVICE"}

// securityRefusals collects what a pod spec asks for and may not have.
type securityRefusals struct {
	class error
	list  []*errdefs.Error
}

func (r *securityRefusals) add(field, message string) {
	r.list = append(r.list, &errdefs.Error{Class: r.class, Field: field, Message: message})
}

// err is nil, or one error of r's class whose field is the first refusal's
// and whose message lists every refusal.
func (r *securityRefusals) err() error {
	if len(r.list) == 0 {
		return nil
	}
	msg := r.list[0].Message
	for _, e := range r.list[1:] {
		msg += "; " + e.Error()
	}
	return errdefs.Field(r.class, r.list[0].Field, msg)
}

// admitPodSecurity refuses a pod spec (at field: "spec" or
// "spec.template.spec") that asks for host namespaces, host paths,
// privileged containers, privilege escalation or capabilities beyond
// allowedAddCapabilities, with 403 naming each field and why. It then
// refuses, with 422, fields the node agent does not carry out yet.
func admitPodSecurity(spec *api.PodSpec, field string) error {
	if err := podSecurityPolicy(spec, field); err != nil {
		return err
	}
	return notCarriedOut(spec, field)
}

func podSecurityPolicy(spec *api.PodSpec, field string) error {
	r := securityRefusals{class: errdefs.ErrPermissionDenied}
	for _, ns := range []struct {
		name, exposes string
		set           bool
	}{
		{"hostNetwork", "network interfaces and ports", spec.HostNetwork},
		{"hostPID", "processes", spec.HostPID},
		{"hostIPC", "shared memory and message queues", spec.HostIPC},
	} {
		if ns.set {
			r.add(field+"."+ns.name, "a tenant's pods may not share the node's namespaces: it would expose the node's "+ns.exposes)
		}
	}
	for i, v := range spec.Volumes {
		if v.HostPath != nil {
			r.add(fmt.Sprintf("%s.volumes[%d].hostPath", field, i), fmt.Sprintf("a tenant's pods may not mount the node's files (%q)", v.HostPath.Path))
		}
	}
	for i := range spec.Containers {
		sc := spec.Containers[i].SecurityContext
		if sc == nil {
			continue
		}
		f := fmt.Sprintf("%s.containers[%d].securityContext", field, i)
		if isTrue(sc.Privileged) {
			r.add(f+".privileged", "a tenant's pods may not run privileged")
		}
		if isTrue(sc.AllowPrivilegeEscalation) {
			r.add(f+".allowPrivilegeEscalation", "a tenant's pods run with no_new_privs: a process may not gain privileges its parent lacked (set false or leave it out)")
		}
		if sc.Capabilities == nil {
			continue
		}
		for j, c := range sc.Capabilities.Add {
			if !slices.Contains(allowedAddCapabilities, c) {
				r.add(fmt.Sprintf("%s.capabilities.add[%d]", f, j), fmt.Sprintf("a tenant's pods may not add capability %s: the only one allowed is %s", c, capabilityList(allowedAddCapabilities)))
			}
		}
	}
	return r.err()
}

// notCarriedOut refuses what a pod spec may validly say but the node agent
// does not pass to the runtimes yet: volumes and mounts, capabilities to
// drop, a user id, runAsNonRoot and a read-only root filesystem. Accepting
// them would run the pod as if they were absent, which for a request to
// drop privileges is worse than a refusal. Remove a line here when the
// agent learns the field.
func notCarriedOut(spec *api.PodSpec, field string) error {
	r := securityRefusals{class: errdefs.ErrInvalidArgument}
	const why = "not supported yet: the node agent does not pass it to the runtime, so the pod would run without it; remove it"
	for i := range spec.Volumes {
		r.add(fmt.Sprintf("%s.volumes[%d]", field, i), "volumes are "+why)
	}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		f := fmt.Sprintf("%s.containers[%d]", field, i)
		if len(c.VolumeMounts) > 0 {
			r.add(f+".volumeMounts", "volume mounts are "+why)
		}
		sc := c.SecurityContext
		if sc == nil {
			continue
		}
		f += ".securityContext"
		if sc.Capabilities != nil && len(sc.Capabilities.Drop) > 0 {
			r.add(f+".capabilities.drop", "dropping capabilities is "+why)
		}
		if sc.RunAsUser != nil {
			r.add(f+".runAsUser", "a user id is "+why+" (the image's user applies)")
		}
		if isTrue(sc.RunAsNonRoot) {
			r.add(f+".runAsNonRoot", "runAsNonRoot is "+why)
		}
		if isTrue(sc.ReadOnlyRootFilesystem) {
			r.add(f+".readOnlyRootFilesystem", "a read-only root filesystem is "+why)
		}
	}
	return r.err()
}

func capabilityList(caps []api.Capability) string {
	s := make([]string, len(caps))
	for i, c := range caps {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}

// isTrue reports whether an optional flag is set to true.
func isTrue(b *bool) bool { return b != nil && *b }
