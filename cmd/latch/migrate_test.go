package main

import (
	"bytes"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/latchhq/latch/migrations"
)

func migrationFiles(t *testing.T) []string {
	t.Helper()
	files, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations: %v", err)
	}
	return files
}

func TestEnsureDatabaseConcurrent(t *testing.T) {
	t.Parallel()
	dsn := freshDatabaseName(t)
	var g errgroup.Group
	for range 3 {
		g.Go(func() error { return ensureDatabase(t.Context(), dsn) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatalf("database not created: %v", err)
	}
	conn.Close(t.Context())
	if err := ensureDatabase(t.Context(), dsn); err != nil {
		t.Errorf("existing database: %v", err)
	}
}

func TestMigrateUpConcurrent(t *testing.T) {
	t.Parallel()
	dsn := freshDatabase(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	// Two processes starting at once: the advisory lock lets one apply, the other then finds
	// nothing to do. Both must succeed.
	var g errgroup.Group
	for range 2 {
		g.Go(func() error { return migrateUp(t.Context(), dsn, log) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	// And once more, sequentially: a no-op.
	if err := migrateUp(t.Context(), dsn, log); err != nil {
		t.Fatal(err)
	}

	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var rows, versions int
	err = conn.QueryRow(t.Context(),
		"SELECT count(*), count(DISTINCT version_id) FROM "+migrationsTable+" WHERE version_id > 0 AND is_applied").
		Scan(&rows, &versions)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(migrationFiles(t)); rows != n || versions != n {
		t.Errorf("%s has %d rows for %d versions, want %d of each", migrationsTable, rows, versions, n)
	}
	var exists bool
	if err := conn.QueryRow(t.Context(), "SELECT to_regclass('identities') IS NOT NULL").Scan(&exists); err != nil || !exists {
		t.Errorf("identities table missing after migrate up (err %v)", err)
	}
	if pending, err := pendingMigrations(t.Context(), dsn); err != nil || pending {
		t.Errorf("pendingMigrations = %v, %v", pending, err)
	}
}

func TestMigrateStatus(t *testing.T) {
	t.Parallel()
	dsn := freshDatabase(t)
	files := migrationFiles(t)

	status := func() string {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run([]string{"migrate", "status", "--dsn", dsn}, &out, &errOut, nil); code != 0 {
			t.Fatalf("migrate status exited %d: %s", code, errOut.String())
		}
		return out.String()
	}

	before := status()
	if !strings.HasPrefix(before, "VERSION") {
		t.Errorf("no header:\n%s", before)
	}
	for _, f := range files {
		if !lineWith(before, f, "pending") {
			t.Errorf("%s not pending before up:\n%s", f, before)
		}
	}
	if pending, err := pendingMigrations(t.Context(), dsn); err != nil || !pending {
		t.Errorf("pendingMigrations on a fresh database = %v, %v", pending, err)
	}

	// Flags after the action, DSN from the environment.
	var errOut bytes.Buffer
	if code := run([]string{"migrate", "up"}, io.Discard, &errOut, []string{"DSN=" + dsn}); code != 0 {
		t.Fatalf("migrate up exited %d: %s", code, errOut.String())
	}
	after := status()
	for _, f := range files {
		if !lineWith(after, f, "applied") {
			t.Errorf("%s not applied after up:\n%s", f, after)
		}
	}
}

func TestMigrateUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"migrate"}, {"migrate", "down"}, {"migrate", "up", "extra"}, {"nope"}, {"serve", "--nope"}} {
		var errOut bytes.Buffer
		if code := run(args, io.Discard, &errOut, nil); code != 2 {
			t.Errorf("%q exited %d, want 2 (%s)", args, code, errOut.String())
		}
	}
	var errOut bytes.Buffer
	if code := run([]string{"migrate", "up"}, io.Discard, &errOut, nil); code != 1 || !strings.Contains(errOut.String(), "config: dsn: is required") {
		t.Errorf("migrate up without a DSN exited %d: %s", code, errOut.String())
	}
}

func lineWith(out string, words ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(l, w)
		}
		if ok {
			return true
		}
	}
	return false
}
