package agent

import (
	"context"
	"fmt"

	"github.com/paddock-dev/paddock/core/api"
)

var (
	secretKind, _    = api.KindFor("secrets")
	configMapKind, _ = api.KindFor("configmaps")
)

// resolveEnv is a container's environment with values from secrets and
// config maps of the pod's tenant read through the API.
func (a *Agent) resolveEnv(ctx context.Context, pod *api.Pod, spec *api.Container) (map[string]string, error) {
	env := make(map[string]string, len(spec.Env))
	for _, e := range spec.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			o, err := a.c.Get(ctx, secretKind, pod.Metadata.Tenant, ref.Name)
			if err != nil {
				return nil, fmt.Errorf("env %s: secret %q: %w", e.Name, ref.Name, err)
			}
			v, ok := o.(*api.Secret).Data[ref.Key]
			if !ok {
				return nil, fmt.Errorf("env %s: secret %q has no key %q", e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = string(v)
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			o, err := a.c.Get(ctx, configMapKind, pod.Metadata.Tenant, ref.Name)
			if err != nil {
				return nil, fmt.Errorf("env %s: config map %q: %w", e.Name, ref.Name, err)
			}
			v, ok := o.(*api.ConfigMap).Data[ref.Key]
			if !ok {
				return nil, fmt.Errorf("env %s: config map %q has no key %q", e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = v
		}
	}
	return env, nil
}
