package errdefs

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestHTTPRoundTrip(t *testing.T) {
	for _, c := range classes {
		t.Run(c.reason, func(t *testing.T) {
			err := fmt.Errorf("context: %w", New(c.err, "msg"))
			code, reason := HTTPStatus(err)
			if code != c.status || reason != c.reason {
				t.Errorf("HTTPStatus(%v) = %d %s, want %d %s", err, code, reason, c.status, c.reason)
			}
			if back := FromHTTP(code, reason); back != c.err {
				t.Errorf("FromHTTP(%d, %s) = %v, want %v", code, reason, back, c.err)
			}
		})
	}
	if code, _ := HTTPStatus(errors.New("boom")); code != http.StatusInternalServerError {
		t.Errorf("HTTPStatus(unclassified) = %d, want 500", code)
	}
	if got := FromHTTP(http.StatusForbidden, ""); got != ErrResourceExhausted && got != ErrPermissionDenied {
		t.Errorf("FromHTTP(403, \"\") = %v, want a 403 class", got)
	}
}

func TestFieldError(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", Field(ErrInvalidArgument, "spec.x", "must be 1"))
	if !errors.Is(err, ErrInvalidArgument) || FieldOf(err) != "spec.x" || err.Error() != "wrapped: spec.x: must be 1" {
		t.Errorf("Field error = %q (field %q)", err, FieldOf(err))
	}
	if FieldOf(errors.New("plain")) != "" {
		t.Error("FieldOf(plain) is not empty")
	}
}
