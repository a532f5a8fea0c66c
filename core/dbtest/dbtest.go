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
	"os"
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
	name := "latch_test_" + randomSuffix(t)
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
