package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/spf13/cobra"
)

func newTenantCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tenant",
		Short: "Manage tenants",
	}
	cmd.AddCommand(newTenantCreateCmd(g))
	return cmd
}

// tenantCreateOptions are the flags of tenant create.
type tenantCreateOptions struct {
	sandboxed           bool
	quota               string
	runtimeClasses      []string
	defaultRuntimeClass string
	nodeSelector        string
}

// tenant returns the Tenant the options describe.
func (o *tenantCreateOptions) tenant(name string) (*api.Tenant, error) {
	t := &api.Tenant{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Tenant"},
		Metadata: api.ObjectMeta{Name: name},
		Spec: api.TenantSpec{
			Isolation:             api.IsolationShared,
			AllowedRuntimeClasses: o.runtimeClasses,
			DefaultRuntimeClass:   o.defaultRuntimeClass,
		},
	}
	if o.sandboxed {
		t.Spec.Isolation = api.IsolationSandboxed
	}
	var err error
	if t.Spec.Quota, err = parseQuota(o.quota); err != nil {
		return nil, err
	}
	if t.Spec.NodeSelector, err = parseKeyValues("--node-selector", o.nodeSelector); err != nil {
		return nil, err
	}
	for _, rc := range o.runtimeClasses {
		if rc == "" {
			return nil, fmt.Errorf("--runtime-classes %q: empty runtime class name; want names separated by commas, e.g. runc,gvisor", strings.Join(o.runtimeClasses, ","))
		}
	}
	return t, nil
}

func newTenantCreateCmd(g *globals) *cobra.Command {
	var o tenantCreateOptions
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a tenant (cluster admins)",
		Long: `Create a tenant: the unit of isolation, with its quota, isolation level,
allowed runtime classes and optional dedicated nodes.`,
		Example: `  paddock tenant create acme --quota pods=10,cpu=4,memory=8Gi
  paddock tenant create secure --sandboxed --runtime-classes gvisor
  paddock tenant create big --node-selector pool=dedicated,zone=a`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := o.tenant(args[0])
			if err != nil {
				return err
			}
			c, _, err := g.client()
			if err != nil {
				return err
			}
			if _, err := c.Create(cmd.Context(), t); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "tenant/%s created\n", args[0])
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&o.sandboxed, "sandboxed", false, "run the tenant's pods only on runtime classes stronger than Linux namespaces (gVisor, VMs)")
	fl.StringVar(&o.quota, "quota", "", "cap the tenant's pods: pods=N,cpu=QUANTITY,memory=QUANTITY (e.g. pods=10,cpu=4,memory=8Gi)")
	fl.StringSliceVar(&o.runtimeClasses, "runtime-classes", nil, "runtime classes the tenant may use, comma-separated (default: any its isolation level permits)")
	fl.StringVar(&o.defaultRuntimeClass, "default-runtime-class", "", "runtime class of pods that name none (default: runc, or gvisor when sandboxed)")
	fl.StringVar(&o.nodeSelector, "node-selector", "", "pin the tenant's pods to nodes with these labels: key=value,...")
	return cmd
}

// quotaKeys are the resources --quota accepts.
const quotaKeys = "pods, cpu, memory"

// parseQuota parses --quota: comma-separated KEY=VALUE pairs where KEY is
// pods (a whole number), cpu or memory (quantities such as 500m or 8Gi).
// The empty string means no quota.
func parseQuota(s string) (*api.TenantQuota, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	q := &api.TenantQuota{}
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		key, value, ok := strings.Cut(part, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !ok || key == "" {
			return nil, fmt.Errorf("--quota: %q is not KEY=VALUE: want e.g. pods=10,cpu=4,memory=8Gi", part)
		}
		if seen[key] {
			return nil, fmt.Errorf("--quota: %s is given twice", key)
		}
		seen[key] = true
		if value == "" {
			return nil, fmt.Errorf("--quota: %s has no value: want e.g. %s", key, quotaExample(key))
		}
		switch key {
		case string(api.ResourcePods):
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("--quota: pods=%s: want a whole number of pods, 0 or more", value)
			}
			q.Pods = &n
		case string(api.ResourceCPU), string(api.ResourceMemory):
			v, err := api.ParseQuantity(value)
			if err != nil {
				return nil, fmt.Errorf("--quota: %s: %s", key, err.Error())
			}
			if key == string(api.ResourceCPU) {
				q.CPU = &v
			} else {
				q.Memory = &v
			}
		default:
			return nil, fmt.Errorf("--quota: unknown resource %q: want one of %s", key, quotaKeys)
		}
	}
	return q, nil
}

func quotaExample(key string) string {
	switch key {
	case "pods":
		return "pods=10"
	case "cpu":
		return "cpu=4 or cpu=500m"
	}
	return "memory=8Gi"
}

// parseKeyValues parses "k=v,k2=v2" for the flag named flag. The empty
// string is nil.
func parseKeyValues(flag, s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	m := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		key, value, ok := strings.Cut(part, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !ok || key == "" {
			return nil, fmt.Errorf("%s: %q is not KEY=VALUE: want e.g. pool=dedicated,zone=a", flag, part)
		}
		if _, dup := m[key]; dup {
			return nil, fmt.Errorf("%s: %s is given twice", flag, key)
		}
		if msgs := api.IsLabelKey(key); len(msgs) > 0 {
			return nil, fmt.Errorf("%s: invalid key %q: %s", flag, key, msgs[0])
		}
		if msgs := api.IsLabelValue(value); len(msgs) > 0 {
			return nil, fmt.Errorf("%s: invalid value %q of %s: %s", flag, value, key, msgs[0])
		}
		m[key] = value
	}
	return m, nil
}
