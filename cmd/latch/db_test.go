package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// testServerURL is the PostgreSQL server the tests use: TEST_DATABASE_URL or the local default.
// Without a server the test fails under CI=true and is skipped otherwise.
func testServerURL(t *testing.T) *url.URL {
	t.Helper()
	raw := os.Getenv("TEST_DATABASE_URL")
	if raw == "" {
		raw = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("TEST_DATABASE_URL must be a postgres:// URL, got %q", raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		// Never a skip: a test that cannot reach its database must not look like a pass.
		t.Fatalf("PostgreSQL at %s is unreachable (set TEST_DATABASE_URL; CI=%q): %v", u.Redacted(), os.Getenv("CI"), err)
	}
	conn.Close(ctx)
	return u
}

// freshDatabaseName returns a DSN for a database that does not exist yet, on the test server,
// and drops that database (if anything created it) when the test ends.
func freshDatabaseName(t *testing.T) string {
	t.Helper()
	u := testServerURL(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "latch_cmdtest_" + hex.EncodeToString(b)
	admin := u.String()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	d := *u
	d.Path = "/" + name
	return d.String()
}

// freshDatabase is freshDatabaseName, created.
func freshDatabase(t *testing.T) string {
	t.Helper()
	dsn := freshDatabaseName(t)
	if err := ensureDatabase(t.Context(), dsn); err != nil {
		t.Fatal(err)
	}
	return dsn
}
