package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/spf13/cobra"
)

// runOptions are the flags of run.
type runOptions struct {
	image        string
	replicas     int32
	port         int32
	env          []string
	runtimeClass string
	output       string
}

// deployment returns the Deployment `paddock run NAME ... -- CMD ARGS`
// creates: pods labelled app=NAME with one container named NAME.
func (o *runOptions) deployment(name, tenant string, command []string) (*api.Deployment, error) {
	if o.image == "" {
		return nil, errors.New("--image is required: the container image to run, e.g. --image busybox")
	}
	if o.replicas < 0 {
		return nil, fmt.Errorf("--replicas %d: want 0 or more", o.replicas)
	}
	if o.port < 0 || o.port > 65535 {
		return nil, fmt.Errorf("--port %d: want a port number, 1-65535", o.port)
	}
	c := api.Container{Name: name, Image: o.image, Command: command}
	if o.port > 0 {
		c.Ports = []api.ContainerPort{{ContainerPort: o.port}}
	}
	for _, kv := range o.env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--env %q: want KEY=VALUE, e.g. --env LOG_LEVEL=debug", kv)
		}
		c.Env = append(c.Env, api.EnvVar{Name: k, Value: v})
	}
	labels := map[string]string{"app": name}
	replicas := o.replicas
	return &api.Deployment{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Deployment"},
		Metadata: api.ObjectMeta{Name: name, Tenant: tenant, Labels: labels},
		Spec: api.DeploymentSpec{
			Replicas: &replicas,
			Selector: &api.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: api.PodTemplateSpec{
				Metadata: api.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:     api.PodSpec{Containers: []api.Container{c}, RuntimeClassName: o.runtimeClass},
			},
		},
	}, nil
}

// runArgs splits run's arguments into NAME and the command after "--".
func runArgs(args []string, dash int) (name string, command []string, err error) {
	before := args
	if dash >= 0 {
		before, command = args[:dash], args[dash:]
	}
	switch len(before) {
	case 0:
		return "", nil, errors.New("run takes NAME before \"--\": paddock run NAME --image IMG [-- CMD ARGS...]")
	case 1:
		return before[0], command, nil
	}
	return "", nil, fmt.Errorf("run takes one NAME, got %q; put the command after \"--\": paddock run NAME --image IMG -- CMD ARGS", strings.Join(before, " "))
}

func newRunCmd(g *globals) *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run NAME --image IMG [--replicas N] [-- CMD ARGS...]",
		Short: "Run an image as a Deployment",
		Long: `Run an image as a Deployment named NAME: --replicas pods labelled app=NAME,
each with one container named NAME. A command after "--" replaces the image's
entrypoint. Change it later with 'paddock scale' and 'paddock apply'; follow a
rollout with 'paddock rollout status'.`,
		Example: `  paddock run web --image nginx --replicas 3 --port 80 -t acme
  paddock run worker --image busybox --env QUEUE=jobs -- sh -c 'sleep 3600'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, command, err := runArgs(args, cmd.ArgsLenAtDash())
			if err != nil {
				return err
			}
			format, err := parseOutput(o.output)
			if err != nil {
				return err
			}
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			tenant, err := g.requireTenant(deploymentKind, cfg)
			if err != nil {
				return err
			}
			d, err := o.deployment(name, tenant, command)
			if err != nil {
				return err
			}
			out, err := c.Create(cmd.Context(), d)
			if err != nil {
				return err
			}
			return g.printChanged(format, out, "created")
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.image, "image", "", "container image to run (required)")
	fl.Int32Var(&o.replicas, "replicas", 1, "number of pods")
	fl.Int32Var(&o.port, "port", 0, "port the container listens on")
	fl.StringArrayVar(&o.env, "env", nil, "environment variable KEY=VALUE (repeatable)")
	fl.StringVar(&o.runtimeClass, "runtime-class", "", "runtime class of the pods (default: the tenant's)")
	fl.StringVarP(&o.output, "output", "o", "", "print the deployment as json, yaml or name instead of a message")
	return cmd
}

// deploymentKind is the Deployment kind.
var deploymentKind, _ = api.KindFor("deployments")

// printChanged prints obj after a change: "deployment/web created", or
// the object in the -o format.
func (g *globals) printChanged(format outputFormat, obj api.Object, verb string) error {
	k, _ := api.KindOf(obj)
	switch format {
	case outputJSON, outputYAML:
		return printDocument(g.out, format, []api.Object{obj}, true)
	case outputName:
		return printNames(g.out, k, []api.Object{obj})
	}
	_, err := fmt.Fprintf(g.out, "%s %s\n", objectRef(k, obj.GetObjectMeta().Name), verb)
	return err
}
