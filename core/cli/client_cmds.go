package cli

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/spf13/cobra"
)

// addClientCommands adds the kubectl-like client commands.
func addClientCommands(root *cobra.Command, g *globals) {
	root.AddCommand(
		newApplyCmd(g),
		newGetCmd(g),
		newDescribeCmd(g),
		newDeleteCmd(g),
		newTenantCmd(g),
		newTokenCmd(g),
	)
}

// kindArg returns the kind a command-line word names ("pods", "pod", "po",
// "Pod").
func kindArg(s string) (*api.Kind, error) {
	k, ok := api.KindFor(s)
	if !ok {
		return nil, fmt.Errorf("unknown resource type %q: want one of %s", s, api.KindNames())
	}
	return k, nil
}

// resourceArgs names objects of one kind; no names means every object of
// the kind.
type resourceArgs struct {
	kind  *api.Kind
	names []string
}

// parseResourceArgs parses the resource arguments of get, describe and
// delete: either "KIND[,KIND...] [NAME...]" or "KIND/NAME..." (kinds may
// differ). Names of the same kind are gathered in one group; groups keep
// the order in which their kinds first appear.
func parseResourceArgs(args []string) ([]resourceArgs, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("want a resource type, one of %s (e.g. pods, or pod/NAME)", api.KindNames())
	}
	if !strings.Contains(args[0], "/") {
		names := args[1:]
		for _, n := range names {
			if n == "" {
				return nil, errors.New("empty NAME argument")
			}
			if strings.Contains(n, "/") {
				return nil, fmt.Errorf("%q: a NAME after the resource type cannot contain \"/\"; give either KIND NAME... or KIND/NAME...", n)
			}
		}
		var groups []resourceArgs
		for _, kn := range strings.Split(args[0], ",") {
			k, err := kindArg(kn)
			if err != nil {
				return nil, err
			}
			if slices.ContainsFunc(groups, func(g resourceArgs) bool { return g.kind == k }) {
				continue
			}
			groups = append(groups, resourceArgs{kind: k, names: names})
		}
		return groups, nil
	}
	var groups []resourceArgs
	for _, a := range args {
		kindName, name, ok := strings.Cut(a, "/")
		if !ok {
			return nil, fmt.Errorf("%q: after a KIND/NAME argument every argument must be KIND/NAME", a)
		}
		if name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("%q: want KIND/NAME such as pod/web", a)
		}
		k, err := kindArg(kindName)
		if err != nil {
			return nil, err
		}
		i := 0
		for i < len(groups) && groups[i].kind != k {
			i++
		}
		if i == len(groups) {
			groups = append(groups, resourceArgs{kind: k})
		}
		groups[i].names = append(groups[i].names, name)
	}
	return groups, nil
}

// scope returns where a list of kind k looks: the tenant of -t or the
// configuration for tenant-scoped kinds, or every tenant (all) with -A or
// when neither names one (a cluster admin). Cluster-scoped kinds have no
// tenant.
func (g *globals) scope(k *api.Kind, cfg *client.Config, allTenants bool) (tenant string, all bool) {
	if !k.TenantScoped {
		return "", false
	}
	if allTenants {
		return "", true
	}
	if t := g.tenantFor(cfg); t != "" {
		return t, false
	}
	return "", true
}

// requireTenant returns the tenant a command on one object of kind k acts
// in, or an error when k is tenant-scoped and no tenant is known.
func (g *globals) requireTenant(k *api.Kind, cfg *client.Config) (string, error) {
	if !k.TenantScoped {
		return "", nil
	}
	if t := g.tenantFor(cfg); t != "" {
		return t, nil
	}
	return "", fmt.Errorf("%s are tenant-scoped: pass -t TENANT (the client config names no tenant)", k.Resource)
}

// objectRef renders obj as kubectl does in messages: "pod/web".
func objectRef(k *api.Kind, name string) string {
	if name == "" {
		return k.Singular
	}
	return k.Singular + "/" + name
}

// errorSink gathers the errors of a command that goes on after a failure
// (get, describe and delete of several names). It prints an error at once
// unless it is the last operation's, which the command returns for Main to
// print; when only earlier operations failed, err summarizes them.
type errorSink struct {
	w       io.Writer
	pending int // operations not yet done
	failed  int
	last    error
}

func newErrorSink(w io.Writer, ops int) *errorSink {
	return &errorSink{w: w, pending: ops}
}

// done records the outcome of one operation.
func (s *errorSink) done(err error) {
	s.pending--
	if err == nil {
		return
	}
	s.failed++
	if s.pending <= 0 {
		s.last = err
		return
	}
	fmt.Fprintln(s.w, FormatError(err))
}

func (s *errorSink) err() error {
	switch {
	case s.last != nil:
		return s.last
	case s.failed == 1:
		return errors.New("one of the objects failed: see the error above")
	case s.failed > 1:
		return fmt.Errorf("%d of the objects failed: see the errors above", s.failed)
	}
	return nil
}

// countNames returns how many names groups hold.
func countNames(groups []resourceArgs) int {
	n := 0
	for _, gr := range groups {
		n += len(gr.names)
	}
	return n
}
