package latchtest

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultDatabaseURL is used when TEST_DATABASE_URL is not set: a local Postgres as CI starts it.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// dbTimeout bounds creating or dropping one database, so a hung server fails the test instead of
// hanging the run.
const dbTimeout = 30 * time.Second

// AdminDSN is the Postgres URL the suites run CREATE DATABASE and DROP DATABASE on:
// TEST_DATABASE_URL, or DefaultDatabaseURL when it is not set.
func AdminDSN() string {
	return cmp.Or(os.Getenv("TEST_DATABASE_URL"), DefaultDatabaseURL)
}

// CheckPostgres reports, within 10 s, whether Postgres answers at AdminDSN. TestMain calls it
// first, so that a missing server fails the run with one clear message instead of every test.
func CheckPostgres(ctx context.Context) error {
	dsn := AdminDSN()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err == nil {
		defer conn.Close(context.Background())
		err = conn.Ping(ctx)
	}
	if err != nil {
		return fmt.Errorf("Postgres is unreachable at %s: %w", Redact(dsn), err)
	}
	return nil
}

// Database is a throw-away database on the server of AdminDSN.
type Database struct {
	// Name is the database's name: the prefix given to CreateDatabase and a random suffix.
	Name string
	// DSN is AdminDSN with the path set to Name: what a `latch` process gets as its dsn.
	DSN string

	adminDSN string
}

// CreateDatabase creates <prefix>_<random> on the server of AdminDSN. The caller drops it
// (Drop); tests use NewDatabase, which does that for them.
func CreateDatabase(ctx context.Context, prefix string) (*Database, error) {
	adminDSN := AdminDSN()
	u, err := url.Parse(adminDSN)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("TEST_DATABASE_URL must be a postgres:// URL, got %q", Redact(adminDSN))
	}
	name := prefix + "_" + strings.ToLower(rand.Text()[:12])
	if err := adminExec(ctx, adminDSN, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	u.Path = "/" + name
	return &Database{Name: name, DSN: u.String(), adminDSN: adminDSN}, nil
}

// Drop drops the database WITH (FORCE): connections a failed test left behind do not keep it.
func (d *Database) Drop(ctx context.Context) error {
	if err := adminExec(ctx, d.adminDSN, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.Name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", d.Name, err)
	}
	return nil
}

// NewDatabase creates <prefix>_<random> for t and returns its URL; it is dropped when t ends.
// Register it before starting the processes that use it: clean-ups run last-in first-out, so
// they are stopped before the drop. It fails t when Postgres is unreachable; it never skips.
func NewDatabase(t testing.TB, prefix string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	db, err := CreateDatabase(ctx, prefix)
	if err != nil {
		t.Fatalf("%v (set TEST_DATABASE_URL; end-to-end tests never skip, CI=%q)", err, os.Getenv("CI"))
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
		defer cancel()
		if err := db.Drop(ctx); err != nil {
			t.Error(err)
		}
	})
	return db.DSN
}

func adminExec(ctx context.Context, adminDSN, sql string) error {
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return fmt.Errorf("Postgres is unreachable at %s: %w", Redact(adminDSN), err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// Redact hides the password of a database URL, for messages.
func Redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}
