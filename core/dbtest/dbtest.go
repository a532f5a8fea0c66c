// Package dbtest gives tests a real, migrated Postgres database of their own, so that tests of
// every package run in parallel against the schema production runs on, without sharing rows.
//
// It owns only test set-up: creating, migrating and dropping throw-away databases. It must not be
// imported by non-test code. A test that calls New never skips: when Postgres is unreachable it
// fails, under CI=true and on a laptop alike, so a missing database can never look like a pass.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/latchhq/latch/migrations"
)

// DefaultURL is used when TEST_DATABASE_URL is not set: a local Postgres as CI starts it.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// setupTimeout bounds creating and migrating one database, so a hung server fails the test
// instead of hanging the run.
const setupTimeout = 30 * time.Second

// namePrefix starts every test database's name, followed by its creation time (Unix seconds)
// and a random suffix, so that leftovers can be recognised and their age read from the name.
const namePrefix = "latch_test_"

// staleAfter is the age past which a test database is a leftover of a killed test process
// (cleanups never ran): far longer than go test's default 10-minute timeout.
const staleAfter = time.Hour

var sweepOnce sync.Once

// New creates a fresh database on the server of TEST_DATABASE_URL, applies every migration of
// package migrations to it with goose, and returns a pool on it. The pool is closed and the
// database dropped when the test ends.
func New(t testing.TB) *pgxpool.Pool {
	t.Helper()
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		base = DefaultURL
	}
	poolCfg, err := pgxpool.ParseConfig(base)
	if err != nil {
		t.Fatalf("dbtest: parse TEST_DATABASE_URL: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()

	admin, err := pgx.ConnectConfig(ctx, poolCfg.ConnConfig.Copy())
	if err != nil {
		t.Fatalf("dbtest: Postgres at %s:%d is unreachable (set TEST_DATABASE_URL; tests never skip, CI=%q): %v",
			poolCfg.ConnConfig.Host, poolCfg.ConnConfig.Port, os.Getenv("CI"), err)
	}
	sweepOnce.Do(func() { sweep(ctx, admin) })
	name := fmt.Sprintf("%s%d_%s", namePrefix, time.Now().Unix(), randomSuffix(t))
	_, err = admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	_ = admin.Close(ctx)
	if err != nil {
		t.Fatalf("dbtest: create database %s: %v", name, err)
	}
	adminCfg := poolCfg.ConnConfig.Copy() // before Database is switched to the test's own
	t.Cleanup(func() { drop(t, adminCfg, name) })

	poolCfg.ConnConfig.Database = name
	if err := migrate(ctx, poolCfg.ConnConfig.Copy()); err != nil {
		t.Fatalf("dbtest: migrate %s: %v", name, err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		t.Fatalf("dbtest: open pool on %s: %v", name, err)
	}
	// Registered after drop, so it runs before it: cleanups run last-in first-out.
	t.Cleanup(pool.Close)
	return pool
}

// sweep drops, once per test process, databases that killed test processes left behind. It is
// best effort and never forces: a database somebody is still connected to is left alone.
func sweep(ctx context.Context, conn *pgx.Conn) {
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 'latch\_test\_%'`)
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, name := range names {
		stamp, _, ok := strings.Cut(strings.TrimPrefix(name, namePrefix), "_")
		created, err := strconv.ParseInt(stamp, 10, 64)
		if !ok || err != nil || time.Since(time.Unix(created, 0)) < staleAfter {
			continue
		}
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize())
	}
}

// migrate applies every migration through database/sql, which is what goose speaks.
func migrate(ctx context.Context, cfg *pgx.ConnConfig) error {
	db := stdlib.OpenDB(*cfg)
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS)
	if err != nil {
		_ = db.Close()
		return err
	}
	defer p.Close() // closes db
	_, err = p.Up(ctx)
	return err
}

// drop removes the test's database, forcing off any connection a failed test left behind.
func drop(t testing.TB, cfg *pgx.ConnConfig, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Errorf("dbtest: drop %s: %v", name, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Errorf("dbtest: drop %s: %v", name, err)
	}
}

func randomSuffix(t testing.TB) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	return hex.EncodeToString(b[:])
}
