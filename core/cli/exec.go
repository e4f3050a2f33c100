package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/paddock-dev/paddock/core/client"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// ExitError makes the paddock process exit with Code without printing
// anything: the exit code of a command run by `paddock exec`.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("command exited with code %d", e.Code) }

// noTTY is printed when -t is asked for without a terminal on stdin;
// the command then runs without one, as kubectl does.
const noTTY = "Unable to use a TTY - input is not a terminal or the right kind of file"

// execFlags are the flags of `paddock exec`.
type execFlags struct {
	container  string
	stdin, tty bool
}

const execUsage = "paddock exec POD [-c CONTAINER] [-i] [-t] -- COMMAND [ARGS...]"

func newExecCmd(g *globals, in io.Reader) *cobra.Command {
	var f execFlags
	cmd := &cobra.Command{
		Use:   "exec POD [-c CONTAINER] [-i] [-t] -- COMMAND [ARGS...]",
		Short: "Run a command in a container of a pod",
		Long: `Run a command in a running container of a pod, on its node, through the API
server. The command's exit code becomes paddock's.

As in kubectl, -t asks for a terminal and -i passes standard input; here the
tenant is given with --tenant (-t means --tty). With -t and no terminal on
standard input, paddock says "` + noTTY + `"
and runs the command without a terminal.`,
		Example: `  paddock exec web -- ls -l /
  paddock exec web -c sidecar -it -- sh
  echo hello | paddock exec web -i -- cat`,
		RunE: func(cmd *cobra.Command, args []string) error {
			pod, command, err := execArgs(args, cmd.ArgsLenAtDash())
			if err != nil {
				return err
			}
			c, tenant, err := g.podClient()
			if err != nil {
				return err
			}
			opts := client.ExecOptions{Container: f.container, Command: command, Stdout: g.out, Stderr: g.errOut, TTY: f.tty}
			if f.stdin {
				opts.Stdin = in
			}
			if f.tty {
				done, err := setupTerminal(&opts, in, g.errOut)
				if err != nil {
					return err
				}
				defer done()
			}
			code, err := c.Exec(cmd.Context(), tenant, pod, opts)
			if err != nil {
				return err
			}
			if code != 0 {
				return &ExitError{Code: code}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.container, "container", "c", "", "container to run in (default: the pod's only container)")
	fl.BoolVarP(&f.stdin, "stdin", "i", false, "pass standard input to the command")
	fl.BoolVarP(&f.tty, "tty", "t", false, "run the command on a terminal")
	// -t is --tty here, as in kubectl: the tenant flag keeps only its
	// long name on this command.
	fl.StringVar(&g.tenant, "tenant", "", "tenant to act in (default: the credential's tenant)")
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w (put -- before the command so that its flags are not read as paddock's: %s)", err, execUsage)
	})
	return cmd
}

// execArgs splits `paddock exec` arguments into the pod and the command;
// dash is the number of arguments before "--" (-1 without one).
func execArgs(args []string, dash int) (pod string, command []string, err error) {
	switch {
	case len(args) == 0 || dash == 0:
		return "", nil, fmt.Errorf("want a pod: %s", execUsage)
	case dash < 0 && len(args) == 1:
		return "", nil, fmt.Errorf("want a command after --: %s", execUsage)
	case dash < 0:
		return "", nil, fmt.Errorf("put -- between the pod and the command: paddock exec %s -- %s", args[0], strings.Join(args[1:], " "))
	case dash == 2:
		// `paddock exec -t acme web -- sh`: -t is --tty here, as in
		// kubectl exec -it, so acme came through as a pod.
		return "", nil, fmt.Errorf("want one pod before --, got %q: if %q is a tenant, name it with --tenant %s (in exec, -t is --tty, as in kubectl exec -it): %s", args[:dash], args[0], args[0], execUsage)
	case dash > 2:
		return "", nil, fmt.Errorf("want one pod before --, got %q: %s", args[:dash], execUsage)
	case len(args) == 1 || args[1] == "":
		return "", nil, fmt.Errorf("want a command after --: %s", execUsage)
	}
	return args[0], args[1:], nil
}

// setupTerminal prepares a -t session: with a terminal on in it puts the
// terminal in raw mode and reports its size now and on every SIGWINCH;
// without one it warns and turns the terminal off. done undoes it.
func setupTerminal(opts *client.ExecOptions, in io.Reader, errOut io.Writer) (done func(), err error) {
	f, ok := in.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		fmt.Fprintln(errOut, noTTY)
		opts.TTY = false
		return func() {}, nil
	}
	fd := int(f.Fd())
	sizes := make(chan client.Size, 1)
	send := func() {
		if w, h, err := term.GetSize(fd); err == nil && w > 0 && h > 0 {
			select {
			case sizes <- client.Size{Width: uint16(w), Height: uint16(h)}:
			default: // one is pending; the next SIGWINCH sends the latest
			}
		}
	}
	send()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-winch:
				send()
			case <-stop:
				return
			}
		}
	}()
	opts.Resize = sizes
	var state *term.State
	if opts.Stdin != nil {
		if state, err = term.MakeRaw(fd); err != nil {
			signal.Stop(winch)
			close(stop)
			return nil, fmt.Errorf("terminal raw mode: %w", err)
		}
	}
	return func() {
		signal.Stop(winch)
		close(stop)
		if state != nil {
			_ = term.Restore(fd, state)
		}
	}, nil
}

// exitCode returns the process exit code for a command's error.
func exitCode(err error) (code int, silent bool) {
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code, true
	}
	return 1, false
}
