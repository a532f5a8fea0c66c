package pgrestart

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/latchhq/latch/tests/latchtest"
)

// pgServer is a Postgres server the test owns: its data directory and port.
type pgServer struct {
	t    *testing.T
	bin  string // the directory of initdb and pg_ctl
	dir  string // holds data/ and the socket
	port int
}

// pgBinDir finds the server binaries: PG_BINDIR, else Debian's layout, else PATH.
func pgBinDir(t *testing.T) string {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		return d
	}
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(m) > 0 {
		return filepath.Dir(m[len(m)-1])
	}
	p, err := exec.LookPath("initdb")
	if err != nil {
		t.Fatal("initdb not found: install the PostgreSQL server or set PG_BINDIR")
	}
	return filepath.Dir(p)
}

// startPostgres initdbs a fresh cluster (trust auth, fsync off: the data is thrown away) and
// starts it on a free port; clean-up stops it and removes the directory.
func startPostgres(t *testing.T) *pgServer {
	t.Helper()
	dir, err := os.MkdirTemp("", "latch-pgrestart-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &pgServer{t: t, bin: pgBinDir(t), dir: dir, port: latchtest.FreePorts(t, 1)[0]}
	if os.Geteuid() == 0 { // Postgres refuses to run as root
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs a postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_ = s.run("pg_ctl", "-D", s.data(), "-m", "immediate", "-w", "stop")
		_ = os.RemoveAll(dir)
	})
	if err := s.run("initdb", "-D", s.data(), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"); err != nil {
		t.Fatal(err)
	}
	s.start()
	return s
}

func (s *pgServer) data() string { return filepath.Join(s.dir, "data") }

// dsn is the URL of database name on this server.
func (s *pgServer) dsn(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, name)
}

// start starts the server and waits until it accepts connections.
func (s *pgServer) start() {
	s.t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", s.port, s.dir)
	if err := s.run("pg_ctl", "-D", s.data(), "-o", opts, "-l", filepath.Join(s.dir, "log"), "-w", "start"); err != nil {
		s.t.Fatal(err)
	}
}

// stop shuts the server down as a restart does (fast: sessions are ended, not waited for).
func (s *pgServer) stop() {
	s.t.Helper()
	if err := s.run("pg_ctl", "-D", s.data(), "-m", "fast", "-w", "stop"); err != nil {
		s.t.Fatal(err)
	}
}

// run runs a server binary, as the postgres user when the test runs as root.
func (s *pgServer) run(name string, args ...string) error {
	bin := filepath.Join(s.bin, name)
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", bin}, args...)...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
		return fmt.Errorf("%s %v: %v\n%s\n--- server log ---\n%s", name, args, err, out, log)
	}
	return nil
}
