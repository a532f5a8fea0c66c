package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/latchhq/latch/migrations"
)

// migrationsTable records which migrations are applied.
const migrationsTable = "latch_migrations"

// newMigrator opens a database/sql handle on dsn and a goose provider over the embedded
// migrations. A session-level advisory lock (pg_try_advisory_lock, polled every second for up to
// five minutes) serialises concurrent runs: when several `latch serve --dev` or `latch migrate
// up` start at once, one applies and the others find nothing left to do. The caller closes the
// returned *sql.DB.
func newMigrator(dsn string) (*goose.Provider, *sql.DB, error) {
	pc, err := pgxpool.ParseConfig(dsn) // strips pool_* settings the server would reject
	if err != nil {
		return nil, nil, fmt.Errorf("migrate: parse dsn: %w", err)
	}
	db := stdlib.OpenDB(*pc.ConnConfig)
	db.SetMaxOpenConns(2)
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS,
		goose.WithSessionLocker(locker),
		goose.WithTableName(migrationsTable),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("migrate: %w", err)
	}
	return p, db, nil
}

// migrateUp applies every pending migration and logs each one. It is safe to run from several
// processes at once.
func migrateUp(ctx context.Context, dsn string, log *slog.Logger) error {
	p, db, err := newMigrator(dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	results, err := p.Up(ctx)
	var pe *goose.PartialError
	if errors.As(err, &pe) {
		results = pe.Applied
	}
	for _, r := range results {
		if r.Error == nil {
			log.Info("migration applied", "version", r.Source.Version, "file", path.Base(r.Source.Path),
				"duration", r.Duration.Round(time.Millisecond))
		}
	}
	if err != nil {
		if pe != nil && pe.Failed != nil {
			return fmt.Errorf("migrate: %s: %w", path.Base(pe.Failed.Source.Path), pe.Err)
		}
		return fmt.Errorf("migrate: %w", err)
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("migrate: read version: %w", err)
	}
	log.Info("database schema is up to date", "version", v, "applied_now", len(results))
	return nil
}

// migrateStatus prints one line per migration: version, applied or pending, when, file.
func migrateStatus(ctx context.Context, dsn string, w io.Writer) error {
	p, db, err := newMigrator(dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	st, err := p.Status(ctx)
	if err != nil {
		return fmt.Errorf("migrate: status: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tSTATE\tAPPLIED AT\tFILE")
	for _, s := range st {
		at := "-"
		if s.State == goose.StateApplied {
			at = s.AppliedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%05d\t%s\t%s\t%s\n", s.Source.Version, s.State, at, path.Base(s.Source.Path))
	}
	return tw.Flush()
}

// pendingMigrations reports whether the database lacks migrations this binary has.
func pendingMigrations(ctx context.Context, dsn string) (bool, error) {
	p, db, err := newMigrator(dsn)
	if err != nil {
		return false, err
	}
	defer db.Close()
	pending, err := p.HasPending(ctx)
	if err != nil {
		return false, fmt.Errorf("migrate: %w", err)
	}
	return pending, nil
}

// ensureDatabase creates the database dsn names when it does not exist (for --dev and tests).
// It first tries the database itself, so a server where it exists needs no access to the
// `postgres` database; otherwise it connects to `postgres` on the same server and runs CREATE
// DATABASE, tolerating a concurrent create by another process.
func ensureDatabase(ctx context.Context, dsn string) error {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("ensure database: parse dsn: %w", err)
	}
	cc := pc.ConnConfig
	name := cc.Database
	if name == "" {
		return nil // libpq default: the user's name, which the server must already have
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err == nil {
		return conn.Close(ctx)
	}
	if !isPgCode(err, "3D000") { // invalid_catalog_name: the database does not exist
		return fmt.Errorf("ensure database %s: %w", name, err)
	}
	admin := cc.Copy()
	admin.Database = "postgres"
	conn, err = pgx.ConnectConfig(ctx, admin)
	if err != nil {
		return fmt.Errorf("ensure database %s: connect to the postgres database: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	// Another process may have won the race: duplicate_database (42P04), or, when both
	// inserted into pg_database at the same moment, unique_violation (23505).
	if err != nil && !isPgCode(err, "42P04") && !isPgCode(err, "23505") {
		return fmt.Errorf("ensure database %s: %w", name, err)
	}
	return nil
}

func isPgCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}
