package pgrestart

import (
	"os"
	"testing"

	"github.com/latchhq/latch/tests/latchtest"
)

// pgServer is the test's own Postgres server (latchtest.PGServer), failing the test on errors.
type pgServer struct {
	*latchtest.PGServer
	t *testing.T
}

// startPostgres starts a fresh server on a free port; clean-up kills it and removes its files.
func startPostgres(t *testing.T) *pgServer {
	t.Helper()
	dir, err := os.MkdirTemp("", "latch-pgrestart-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	pg, err := latchtest.StartPGServer(dir, latchtest.FreePorts(t, 1)[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Kill) // runs before the directory is removed
	return &pgServer{PGServer: pg, t: t}
}

func (s *pgServer) dsn(name string) string { return s.DSN(name) }

func (s *pgServer) start() {
	s.t.Helper()
	if err := s.Start(); err != nil {
		s.t.Fatal(err)
	}
}

func (s *pgServer) stop() {
	s.t.Helper()
	if err := s.Stop(); err != nil {
		s.t.Fatal(err)
	}
}
