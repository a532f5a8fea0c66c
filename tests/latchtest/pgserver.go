package latchtest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
)

// PGServer is a Postgres server of a test's or a command's own: a cluster initdb'd into a
// directory, on a port of its own, so that stopping or restarting it touches nobody else's
// server. It runs with trust auth and fsync off: the data is thrown away.
type PGServer struct {
	Dir  string // holds data/, the socket and the log
	Port int
	bin  string // the directory of initdb and pg_ctl
}

// PGBinDir finds the server binaries: PG_BINDIR, else Debian's layout, else PATH.
func PGBinDir() (string, error) {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		return d, nil
	}
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(m) > 0 {
		return filepath.Dir(m[len(m)-1]), nil
	}
	p, err := exec.LookPath("initdb")
	if err != nil {
		return "", fmt.Errorf("initdb not found: install the PostgreSQL server or set PG_BINDIR")
	}
	return filepath.Dir(p), nil
}

// StartPGServer initdbs a fresh cluster in dir (created if missing) and starts it on port.
func StartPGServer(dir string, port int) (*PGServer, error) {
	bin, err := PGBinDir()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 { // Postgres refuses to run as root
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs a postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	s := &PGServer{Dir: dir, Port: port, bin: bin}
	if err := s.run("initdb", "-D", s.data(), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"); err != nil {
		return nil, err
	}
	return s, s.Start()
}

func (s *PGServer) data() string { return filepath.Join(s.Dir, "data") }

// DSN is the URL of database name on this server.
func (s *PGServer) DSN(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, name)
}

// Start starts the server and waits until it accepts connections.
func (s *PGServer) Start() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", s.Port, s.Dir)
	return s.run("pg_ctl", "-D", s.data(), "-o", opts, "-l", filepath.Join(s.Dir, "log"), "-w", "-t", "60", "start")
}

// Stop shuts the server down as an operator's restart does: fast mode ends the sessions
// (their transactions roll back) instead of waiting for them.
func (s *PGServer) Stop() error {
	return s.run("pg_ctl", "-D", s.data(), "-m", "fast", "-w", "-t", "60", "stop")
}

// Kill ends the server without a checkpoint, for the end of a run.
func (s *PGServer) Kill() {
	_ = s.run("pg_ctl", "-D", s.data(), "-m", "immediate", "-w", "stop")
}

// run runs a server binary, as the postgres user when the process runs as root.
func (s *PGServer) run(name string, args ...string) error {
	bin := filepath.Join(s.bin, name)
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", bin}, args...)...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.Dir, "log"))
		if len(log) > 4<<10 {
			log = log[len(log)-4<<10:]
		}
		return fmt.Errorf("%s %v: %v\n%s\n--- server log ---\n%s", name, args, err, out, log)
	}
	return nil
}
