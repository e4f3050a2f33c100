package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/coder/websocket"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// LogOptions says which of a container's log lines to read.
type LogOptions struct {
	// Container names the container; empty means the pod's only one.
	Container string
	// Follow keeps the stream open for new lines until the container
	// exits or ctx ends.
	Follow bool
	// Since keeps only lines of the last Since (whole seconds); SinceTime
	// only lines at or after a time. Give at most one.
	Since     time.Duration
	SinceTime time.Time
	// TailLines keeps only the last *TailLines lines; nil keeps all.
	TailLines *int64
	// Timestamps starts each line with its time (RFC 3339, nanoseconds).
	Timestamps bool
	// Previous reads the previous instance of a restarted container.
	Previous bool
}

func (o LogOptions) query() url.Values {
	q := url.Values{}
	set := func(k string, on bool) {
		if on {
			q.Set(k, "true")
		}
	}
	if o.Container != "" {
		q.Set("container", o.Container)
	}
	set("follow", o.Follow)
	set("timestamps", o.Timestamps)
	set("previous", o.Previous)
	if o.Since > 0 {
		q.Set("sinceSeconds", strconv.FormatInt(int64((o.Since+time.Second-1)/time.Second), 10))
	}
	if !o.SinceTime.IsZero() {
		q.Set("sinceTime", o.SinceTime.UTC().Format(time.RFC3339Nano))
	}
	if o.TailLines != nil {
		q.Set("tailLines", strconv.FormatInt(*o.TailLines, 10))
	}
	return q
}

// Logs opens a container's log: text lines, until the log's end or, with
// Follow, until the container exits or ctx ends. The caller closes it.
func (c *Client) Logs(ctx context.Context, tenant, pod string, opts LogOptions) (io.ReadCloser, error) {
	resp, err := c.Do(ctx, http.MethodGet, podPath(tenant, pod)+"/log", opts.query(), nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// podPath returns the URL path of a pod.
func podPath(tenant, pod string) string {
	return "/api/v1/tenants/" + url.PathEscape(tenant) + "/pods/" + url.PathEscape(pod)
}

// Size is a terminal's size in character cells.
type Size struct {
	Width, Height uint16
}

// ExecOptions describes a command to run in a container.
type ExecOptions struct {
	// Container names the container; empty means the pod's only one.
	Container string
	// Command is the program and its arguments.
	Command []string
	// Stdin, when set, is copied to the command's input; its end closes
	// the input. Exec returns without waiting for a Read in progress.
	Stdin io.Reader
	// Stdout and Stderr receive the command's output (nil discards). With
	// TTY the terminal's output all goes to Stdout.
	Stdout, Stderr io.Writer
	// TTY runs the command on a terminal.
	TTY bool
	// Resize, when set, carries the terminal's sizes. A size already
	// waiting in it when Exec starts is sent before any input, so a
	// buffered channel holding the initial size sets it before the
	// command reads.
	Resize <-chan Size
}

// The exec protocol's channels (docs/api.md).
const (
	execStdin      byte = 0
	execStdout     byte = 1
	execStderr     byte = 2
	execStatus     byte = 3
	execResize     byte = 4
	execCloseStdin byte = 255
)

// execSubprotocol is the WebSocket subprotocol of the exec protocol.
const execSubprotocol = "v1.exec.paddock.dev"

// execStatusMessage is the status message's payload.
type execStatusMessage struct {
	ExitCode *int32 `json:"exitCode"`
	Error    string `json:"error"`
	Code     int    `json:"code"`
	Reason   string `json:"reason"`
}

// Exec runs a command in a container of a pod and returns its exit code.
// An error means the command could not run or its session broke; a
// command that ran and failed is a non-zero exit code and no error.
func (c *Client) Exec(ctx context.Context, tenant, pod string, opts ExecOptions) (int, error) {
	if len(opts.Command) == 0 || opts.Command[0] == "" {
		return -1, errdefs.Field(errdefs.ErrBadRequest, "command", "required: the program to run and its arguments")
	}
	q := url.Values{"command": opts.Command}
	if opts.Container != "" {
		q.Set("container", opts.Container)
	}
	if opts.Stdin != nil {
		q.Set("stdin", "true")
	}
	if opts.TTY {
		q.Set("tty", "true")
	}
	u := c.base + podPath(tenant, pod) + "/exec?" + q.Encode()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		HTTPClient:   c.hc,
		HTTPHeader:   http.Header{"Authorization": {"Bearer " + c.token}},
		Subprotocols: []string{execSubprotocol},
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return -1, decodeError(resp)
		}
		if ctx.Err() != nil {
			return -1, ctx.Err()
		}
		return -1, fmt.Errorf("%w: exec in pod %q: %v", errdefs.ErrUnavailable, pod, err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)

	resize := func(sz Size) error {
		b, _ := json.Marshal(map[string]uint16{"width": sz.Width, "height": sz.Height})
		return conn.Write(ctx, websocket.MessageBinary, append([]byte{execResize}, b...))
	}
	resizes := opts.Resize
	select {
	case sz, ok := <-resizes:
		if !ok {
			resizes = nil
		} else if err := resize(sz); err != nil {
			return -1, fmt.Errorf("%w: exec in pod %q: %v", errdefs.ErrUnavailable, pod, err)
		}
	default:
	}
	if opts.Stdin != nil {
		go copyStdin(ctx, conn, opts.Stdin)
	}
	if resizes != nil {
		go func() {
			for {
				select {
				case sz, ok := <-resizes:
					if !ok || resize(sz) != nil {
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	for {
		_, m, err := conn.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return -1, ctx.Err()
			}
			return -1, fmt.Errorf("%w: exec in pod %q: the session ended before the command's exit status: %v", errdefs.ErrUnavailable, pod, err)
		}
		if len(m) == 0 {
			continue
		}
		var w io.Writer
		switch m[0] {
		case execStdout:
			w = opts.Stdout
		case execStderr:
			w = opts.Stderr
		case execStatus:
			_ = conn.Close(websocket.StatusNormalClosure, "")
			return execResult(pod, m[1:])
		}
		if w != nil {
			if _, err := w.Write(m[1:]); err != nil {
				return -1, fmt.Errorf("exec in pod %q: writing its output: %w", pod, err)
			}
		}
	}
}

// execResult turns the status message into Exec's results.
func execResult(pod string, payload []byte) (int, error) {
	var st execStatusMessage
	if err := json.Unmarshal(payload, &st); err != nil {
		return -1, fmt.Errorf("%w: exec in pod %q: malformed status %q", errdefs.ErrInternal, pod, payload)
	}
	switch {
	case st.Error != "":
		return -1, &errdefs.Error{Class: errdefs.FromHTTP(st.Code, st.Reason), Message: st.Error}
	case st.ExitCode == nil:
		return -1, fmt.Errorf("%w: exec in pod %q: the status has no exit code", errdefs.ErrInternal, pod)
	}
	return int(*st.ExitCode), nil
}

// copyStdin sends r to the session as input, then closes the input.
func copyStdin(ctx context.Context, conn *websocket.Conn, r io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf[1:])
		if n > 0 {
			buf[0] = execStdin
			if conn.Write(ctx, websocket.MessageBinary, buf[:1+n]) != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() != nil {
				return
			}
			_ = conn.Write(ctx, websocket.MessageBinary, []byte{execCloseStdin})
			return
		}
	}
}
