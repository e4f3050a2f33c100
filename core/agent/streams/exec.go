package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/coder/websocket"
	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// The exec WebSocket protocol: every message is binary and starts with
// its channel byte; the rest is the payload.
const (
	ChannelStdin      byte = 0   // client → server: input bytes
	ChannelStdout     byte = 1   // server → client: output bytes
	ChannelStderr     byte = 2   // server → client: error output (none with a tty)
	ChannelStatus     byte = 3   // server → client, last: ExecStatus as JSON
	ChannelResize     byte = 4   // client → server: TerminalSize as JSON
	ChannelCloseStdin byte = 255 // client → server: end of input, no payload
)

// Subprotocol is the WebSocket subprotocol of this version of the exec
// protocol; servers select it when the client offers it.
const Subprotocol = "v1.exec.paddock.dev"

// MaxMessage bounds the messages a client may send.
const MaxMessage = 1 << 20

// ExecStatus ends an exec session: the command's exit code, or why it
// could not run or finish.
type ExecStatus struct {
	ExitCode *int32 `json:"exitCode,omitempty"`
	Error    string `json:"error,omitempty"`
	// Code and Reason are the error's class as the API names it: the
	// HTTP status and reason it would have (404, NotFound).
	Code   int    `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// TerminalSize is a resize message's payload.
type TerminalSize struct {
	Width  uint16 `json:"width"`
	Height uint16 `json:"height"`
}

// execOptions are the query parameters of an exec request.
type execOptions struct {
	command    []string
	stdin, tty bool
}

func parseExecOptions(r *http.Request) (execOptions, error) {
	q := r.URL.Query()
	o := execOptions{command: q["command"]}
	if len(o.command) == 0 || o.command[0] == "" {
		return o, errdefs.Field(errdefs.ErrBadRequest, "command", "required: give the program and its arguments as repeated command= parameters")
	}
	var err error
	if o.stdin, err = boolParam(q, "stdin"); err != nil {
		return o, err
	}
	o.tty, err = boolParam(q, "tty")
	return o, err
}

func (s *Server) serveExec(w http.ResponseWriter, r *http.Request) {
	opts, err := parseExecOptions(r)
	if err != nil {
		writeError(w, err)
		return
	}
	t, err := s.resolve(r, false)
	if err != nil {
		writeError(w, err)
		return
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols: []string{Subprotocol},
		// Only the API server reaches this endpoint (mutual TLS), never
		// a browser: there is no cross-origin request to refuse.
		InsecureSkipVerify: true,
	})
	if err != nil {
		return // Accept has answered
	}
	defer conn.CloseNow()
	conn.SetReadLimit(MaxMessage)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	st := s.exec(ctx, cancel, conn, t, opts)
	b, _ := json.Marshal(st)
	if err := conn.Write(ctx, websocket.MessageBinary, append([]byte{ChannelStatus}, b...)); err != nil {
		return
	}
	_ = conn.Close(websocket.StatusNormalClosure, "")
}

// exec runs one session: input from conn goes to the plugin, output from
// the plugin goes to conn, until the plugin sends the exit code.
func (s *Server) exec(ctx context.Context, cancel context.CancelFunc, conn *websocket.Conn, t Target, opts execOptions) ExecStatus {
	stream, err := t.Runtime.Exec(ctx)
	if err == nil {
		err = stream.Send(&runtimev1.ExecInput{Input: &runtimev1.ExecInput_Start{Start: &runtimev1.ExecStart{
			Id: t.ContainerID, Command: opts.command, Tty: opts.tty, Stdin: opts.stdin,
		}}})
	}
	if err != nil {
		return errorStatus(err)
	}
	go func() {
		// The client going away ends the session (the plugin kills the
		// process when the call ends).
		defer cancel()
		for {
			in, err := readInput(ctx, conn, opts.stdin)
			if err != nil {
				return
			}
			if in != nil && stream.Send(in) != nil {
				return
			}
		}
	}()
	for {
		out, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w: the runtime ended the exec session without an exit code", errdefs.ErrInternal)
			}
			return errorStatus(err)
		}
		var msg []byte
		switch v := out.Output.(type) {
		case *runtimev1.ExecOutput_Stdout:
			msg = append([]byte{ChannelStdout}, v.Stdout...)
		case *runtimev1.ExecOutput_Stderr:
			msg = append([]byte{ChannelStderr}, v.Stderr...)
		case *runtimev1.ExecOutput_ExitCode:
			code := v.ExitCode
			return ExecStatus{ExitCode: &code}
		default:
			continue
		}
		if err := conn.Write(ctx, websocket.MessageBinary, msg); err != nil {
			return errorStatus(err)
		}
	}
}

// readInput reads one client message and returns the plugin input it
// stands for; nil for messages that carry nothing for the plugin (input
// when stdin was not asked for, an unknown channel).
func readInput(ctx context.Context, conn *websocket.Conn, stdin bool) (*runtimev1.ExecInput, error) {
	typ, msg, err := conn.Read(ctx)
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageBinary || len(msg) == 0 {
		return nil, nil
	}
	switch msg[0] {
	case ChannelStdin:
		if stdin && len(msg) > 1 {
			return &runtimev1.ExecInput{Input: &runtimev1.ExecInput_Stdin{Stdin: msg[1:]}}, nil
		}
	case ChannelCloseStdin:
		if stdin {
			return &runtimev1.ExecInput{Input: &runtimev1.ExecInput_CloseStdin{CloseStdin: true}}, nil
		}
	case ChannelResize:
		var sz TerminalSize
		if json.Unmarshal(msg[1:], &sz) == nil && sz.Width > 0 && sz.Height > 0 {
			return &runtimev1.ExecInput{Input: &runtimev1.ExecInput_Resize{Resize: &runtimev1.Resize{Width: uint32(sz.Width), Height: uint32(sz.Height)}}}, nil
		}
	}
	return nil, nil
}

func errorStatus(err error) ExecStatus {
	code, reason := errdefs.HTTPStatus(err)
	return ExecStatus{Error: err.Error(), Code: code, Reason: reason}
}
