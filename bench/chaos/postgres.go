package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
)

// postgres is the command's own Postgres server: a cluster initdb'd into the run's directory
// on a free port, so that restarting it touches nobody else's server.
type postgres struct {
	bin  string // the directory of initdb and pg_ctl
	dir  string // holds data/, the socket and the log
	port int
}

// pgBinDir finds the server binaries: PG_BINDIR, else Debian's layout, else PATH.
func pgBinDir() (string, error) {
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

// startPostgres initdbs a fresh cluster in dir (trust auth, fsync off: the data is thrown
// away) and starts it on port.
func startPostgres(dir string, port int) (*postgres, error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
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
	pg := &postgres{bin: bin, dir: dir, port: port}
	if err := pg.run("initdb", "-D", pg.data(), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"); err != nil {
		return nil, err
	}
	return pg, pg.start()
}

func (pg *postgres) data() string { return filepath.Join(pg.dir, "data") }

// dsn is the URL of database name on this server.
func (pg *postgres) dsn(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", pg.port, name)
}

// start starts the server and waits until it accepts connections.
func (pg *postgres) start() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", pg.port, pg.dir)
	return pg.run("pg_ctl", "-D", pg.data(), "-o", opts, "-l", filepath.Join(pg.dir, "log"), "-w", "-t", "60", "start")
}

// stop shuts the server down as an operator's restart does: fast mode ends the sessions
// (their transactions roll back) instead of waiting for them.
func (pg *postgres) stop() error {
	return pg.run("pg_ctl", "-D", pg.data(), "-m", "fast", "-w", "-t", "60", "stop")
}

// kill ends the server at the end of the run, without a checkpoint.
func (pg *postgres) kill() {
	_ = pg.run("pg_ctl", "-D", pg.data(), "-m", "immediate", "-w", "stop")
}

// run runs a server binary, as the postgres user when the command runs as root.
func (pg *postgres) run(name string, args ...string) error {
	bin := filepath.Join(pg.bin, name)
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", bin}, args...)...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(pg.dir, "log"))
		if len(log) > 4<<10 {
			log = log[len(log)-4<<10:]
		}
		return fmt.Errorf("%s %v: %v\n%s\n--- server log ---\n%s", name, args, err, out, log)
	}
	return nil
}
