package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestDatabaseUnavailable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "57P01"}, true}, // admin shutdown: a restart
		{&pgconn.PgError{Code: "57P03"}, true}, // cannot connect now: starting up
		{&pgconn.PgError{Code: "08006"}, true}, // connection failure
		{fmt.Errorf("insert: %w", &pgconn.PgError{Code: "23505"}), false},
		{&pgconn.PgError{}, false},
		{fmt.Errorf("read: %w", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}), true},
		{syscall.ECONNRESET, true},
		{errors.New("schema not found"), false},
		{context.Canceled, false},
	} {
		if got := DatabaseUnavailable(c.err); got != c.want {
			t.Errorf("DatabaseUnavailable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	rec := httptest.NewRecorder()
	WriteError(rec, httptest.NewRequest("GET", "/", nil), nil, fmt.Errorf("query: %w", &pgconn.PgError{Code: "57P01"}))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("WriteError of a shutdown: %d", rec.Code)
	}
}
