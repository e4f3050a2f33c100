package streams

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// logOptions are the query parameters of a logs request (the same as the
// API server's pods/log subresource).
type logOptions struct {
	Follow     bool
	Timestamps bool
	Previous   bool
	// Since keeps only lines at or after it; zero keeps all.
	Since time.Time
	// Tail keeps only the last Tail lines; negative keeps all.
	Tail int64
}

// parseLogOptions reads the logs query parameters, with errors naming the
// parameter; now anchors sinceSeconds.
func parseLogOptions(q url.Values, now time.Time) (logOptions, error) {
	o := logOptions{Tail: -1}
	var err error
	if o.Follow, err = boolParam(q, "follow"); err != nil {
		return o, err
	}
	if o.Timestamps, err = boolParam(q, "timestamps"); err != nil {
		return o, err
	}
	if o.Previous, err = boolParam(q, "previous"); err != nil {
		return o, err
	}
	if v := q.Get("tailLines"); v != "" {
		if o.Tail, err = strconv.ParseInt(v, 10, 64); err != nil || o.Tail < -1 {
			return o, errdefs.Field(errdefs.ErrBadRequest, "tailLines", fmt.Sprintf("invalid value %q: want a whole number of lines, -1 for all", v))
		}
	}
	secs, tm := q.Get("sinceSeconds"), q.Get("sinceTime")
	switch {
	case secs != "" && tm != "":
		return o, errdefs.Field(errdefs.ErrBadRequest, "sinceSeconds", "give at most one of sinceSeconds and sinceTime")
	case secs != "":
		n, err := strconv.ParseInt(secs, 10, 64)
		if err != nil || n <= 0 {
			return o, errdefs.Field(errdefs.ErrBadRequest, "sinceSeconds", fmt.Sprintf("invalid value %q: want a positive whole number of seconds", secs))
		}
		o.Since = now.Add(-time.Duration(n) * time.Second)
	case tm != "":
		if o.Since, err = time.Parse(time.RFC3339Nano, tm); err != nil {
			return o, errdefs.Field(errdefs.ErrBadRequest, "sinceTime", fmt.Sprintf("invalid value %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", tm))
		}
	}
	return o, nil
}

// boolParam reads a boolean query parameter; absent or empty is false.
func boolParam(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errdefs.Field(errdefs.ErrBadRequest, name, fmt.Sprintf("invalid value %q: want true or false", v))
	}
	return b, nil
}

// request returns the plugin request for the options, and whether there
// is nothing to send at all (tailLines=0 without follow).
func (o logOptions) request(id string, now time.Time) (req *runtimev1.LogsRequest, none bool) {
	req = &runtimev1.LogsRequest{Id: id, Follow: o.Follow}
	since := o.Since
	switch {
	case o.Tail == 0 && !o.Follow:
		return nil, true
	case o.Tail == 0:
		// Only what comes from now on (the plugin's tail 0 means all).
		if since.Before(now) {
			since = now
		}
	case o.Tail > 0:
		req.Tail = o.Tail
	}
	if !since.IsZero() {
		req.Since = since.UnixNano()
	}
	return req, false
}

func (s *Server) serveLogs(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	opts, err := parseLogOptions(r.URL.Query(), now)
	if err != nil {
		writeError(w, err)
		return
	}
	t, err := s.resolve(r, opts.Previous)
	if err != nil {
		writeError(w, err)
		return
	}
	req, none := opts.request(t.ContainerID, now)
	var stream interface {
		Recv() (*runtimev1.LogLine, error)
	}
	var first *runtimev1.LogLine
	if !none {
		stream, err = t.Runtime.Logs(r.Context(), req)
		if err == nil && !opts.Follow {
			// Without follow the first answer comes at once: an error
			// still becomes the HTTP status.
			first, err = stream.Recv()
		}
		if err != nil && !errors.Is(err, io.EOF) {
			writeError(w, err)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if stream == nil || errors.Is(err, io.EOF) {
		return
	}
	rc := http.NewResponseController(w)
	lw := lineWriter{w: w, timestamps: opts.Timestamps}
	if first != nil {
		if lw.write(first) != nil {
			return
		}
	}
	for {
		if opts.Follow {
			if rc.Flush() != nil {
				return
			}
		}
		l, err := stream.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) && r.Context().Err() == nil {
				s.log.Warn("log stream broke", "tenant", r.PathValue("tenant"), "pod", r.PathValue("pod"), "container", t.ContainerID, "error", err)
			}
			return
		}
		if lw.write(l) != nil {
			return
		}
	}
}

// lineWriter writes log lines as text: partial lines are joined with
// their continuation, and with timestamps each whole line starts with its
// time (RFC 3339, nanoseconds, UTC) and a space.
type lineWriter struct {
	w          io.Writer
	timestamps bool
	inLine     bool // the previous line was partial
	buf        []byte
}

func (lw *lineWriter) write(l *runtimev1.LogLine) error {
	b := lw.buf[:0]
	if lw.timestamps && !lw.inLine {
		b = time.Unix(0, l.Timestamp).UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, ' ')
	}
	b = append(b, l.Line...)
	if !l.Partial {
		b = append(b, '\n')
	}
	lw.inLine = l.Partial
	lw.buf = b
	_, err := lw.w.Write(b)
	return err
}
