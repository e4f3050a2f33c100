// Package errdefs defines Paddock's error classes.
//
// Every layer wraps one of the sentinel errors below with context (using
// fmt.Errorf and %w, or New / Field for errors a user will read) and callers
// test for a class with errors.Is. Translation to HTTP status codes happens
// only at the process boundary, through HTTPStatus and FromHTTP; the gRPC
// translation for plugins lives with the plugin contracts.
//
// The package is a leaf: it imports only the standard library, so plugin
// contracts and plugins may depend on it.
package errdefs

import (
	"errors"
	"net/http"
)

// The error classes. Each maps to exactly one HTTP status.
var (
	ErrBadRequest         = errors.New("bad request")         // 400: malformed input, unknown kind or field
	ErrUnauthenticated    = errors.New("unauthenticated")     // 401
	ErrPermissionDenied   = errors.New("permission denied")   // 403
	ErrNotFound           = errors.New("not found")           // 404
	ErrMethodNotAllowed   = errors.New("method not allowed")  // 405
	ErrAlreadyExists      = errors.New("already exists")      // 409 reason AlreadyExists
	ErrConflict           = errors.New("conflict")            // 409 reason Conflict: stale resourceVersion
	ErrGone               = errors.New("gone")                // 410: revision compacted, continue token expired
	ErrTooLarge           = errors.New("request too large")   // 413
	ErrInvalidArgument    = errors.New("invalid")             // 422: failed validation
	ErrResourceExhausted  = errors.New("quota exceeded")      // 403 reason QuotaExceeded
	ErrTooManyRequests    = errors.New("too many requests")   // 429
	ErrUnavailable        = errors.New("unavailable")         // 503
	ErrNotImplemented     = errors.New("not implemented")     // 501
	ErrFailedPrecondition = errors.New("failed precondition") // 412
	ErrInternal           = errors.New("internal error")      // 500
)

// classes lists every class with its HTTP status and API reason, most
// specific first (ErrResourceExhausted before ErrPermissionDenied because
// both are 403).
var classes = []struct {
	err    error
	status int
	reason string
}{
	{ErrBadRequest, http.StatusBadRequest, "BadRequest"},
	{ErrUnauthenticated, http.StatusUnauthorized, "Unauthorized"},
	{ErrResourceExhausted, http.StatusForbidden, "QuotaExceeded"},
	{ErrPermissionDenied, http.StatusForbidden, "Forbidden"},
	{ErrNotFound, http.StatusNotFound, "NotFound"},
	{ErrMethodNotAllowed, http.StatusMethodNotAllowed, "MethodNotAllowed"},
	{ErrAlreadyExists, http.StatusConflict, "AlreadyExists"},
	{ErrConflict, http.StatusConflict, "Conflict"},
	{ErrGone, http.StatusGone, "Gone"},
	{ErrFailedPrecondition, http.StatusPreconditionFailed, "PreconditionFailed"},
	{ErrTooLarge, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge"},
	{ErrInvalidArgument, http.StatusUnprocessableEntity, "Invalid"},
	{ErrTooManyRequests, http.StatusTooManyRequests, "TooManyRequests"},
	{ErrInternal, http.StatusInternalServerError, "InternalError"},
	{ErrNotImplemented, http.StatusNotImplemented, "NotImplemented"},
	{ErrUnavailable, http.StatusServiceUnavailable, "ServiceUnavailable"},
}

// Error is an error a user will read: a class, a message and, where the
// error is about one field of an object, the field's path
// (spec.containers[0].image).
type Error struct {
	Class   error
	Field   string
	Message string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Message
	}
	return e.Message
}

// Unwrap makes errors.Is(err, class) hold.
func (e *Error) Unwrap() error { return e.Class }

// New returns an error of class with a message for the user.
func New(class error, message string) error {
	return &Error{Class: class, Message: message}
}

// Field returns an error of class about one field.
func Field(class error, field, message string) error {
	return &Error{Class: class, Field: field, Message: message}
}

// FieldOf returns the field path carried by err, or "".
func FieldOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}

// HTTPStatus returns the HTTP status code and API reason for err. Errors of
// no known class are internal errors.
func HTTPStatus(err error) (int, string) {
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return c.status, c.reason
		}
	}
	return http.StatusInternalServerError, "InternalError"
}

// FromHTTP returns the class for an HTTP status and API reason, as answered
// by the API server.
func FromHTTP(status int, reason string) error {
	for _, c := range classes {
		if c.status == status && (reason == "" || c.reason == reason) {
			return c.err
		}
	}
	for _, c := range classes {
		if c.status == status {
			return c.err
		}
	}
	if status >= 500 {
		return ErrInternal
	}
	return ErrBadRequest
}

// Convenience predicates for the classes callers test most.

// IsNotFound reports whether err is of class ErrNotFound.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsConflict reports whether err is of class ErrConflict.
func IsConflict(err error) bool { return errors.Is(err, ErrConflict) }

// IsAlreadyExists reports whether err is of class ErrAlreadyExists.
func IsAlreadyExists(err error) bool { return errors.Is(err, ErrAlreadyExists) }

// IsGone reports whether err is of class ErrGone.
func IsGone(err error) bool { return errors.Is(err, ErrGone) }
