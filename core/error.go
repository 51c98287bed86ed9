package core

import (
	"errors"
	"fmt"
	"strings"
)

// Error codes. Transports map them at their edge (HTTP status, MQTT payload
// field) and rebuild *Error on the other side.
const (
	ECONFLICT     = "conflict"
	EINTERNAL     = "internal"
	EINVALID      = "invalid"
	ENOTFOUND     = "not_found"
	EUNAUTHORIZED = "unauthorized"
	EUNAVAILABLE  = "unavailable"
)

// Error is an application error: a code for programs and a message for people.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// problems holds each problem of an EINVALID error that gathers
	// several (see problems), so gathering nests without losing them.
	problems []string
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for
// any other non-nil error and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the message of the first *Error in err's chain, or a
// generic message for other errors so internals do not leak to users.
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// problems gathers every problem of one object, so that a user fixes a
// manifest in one round rather than one error at a time. Its error is nil,
// the one problem, or an EINVALID error listing them all ("; ").
type problems struct{ list []string }

// add records err's problems (none for nil) and reports whether there
// were any.
func (p *problems) add(err error) bool {
	if err == nil {
		return false
	}
	var e *Error
	switch {
	case errors.As(err, &e) && len(e.problems) > 0:
		p.list = append(p.list, e.problems...)
	case e != nil:
		p.list = append(p.list, e.Message)
	default:
		p.list = append(p.list, err.Error()) // validation's own fmt errors: nothing internal
	}
	return true
}

// maxProblems bounds one error's list: a manifest with thousands of
// broken items needs the first few, not a megabyte of messages.
const maxProblems = 20

func (p *problems) err() error {
	switch n := len(p.list); {
	case n == 0:
		return nil
	case n == 1:
		return Errorf(EINVALID, "%s", p.list[0])
	case n > maxProblems:
		list := append(p.list[:maxProblems:maxProblems], fmt.Sprintf("and %d more", n-maxProblems))
		return &Error{Code: EINVALID, Message: strings.Join(list, "; "), problems: p.list}
	default:
		return &Error{Code: EINVALID, Message: strings.Join(p.list, "; "), problems: p.list}
	}
}
