package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// proc is one run of a `latch` child process. A restart is a new proc with the same spec; the
// log file is shared, so a process's history reads in one place.
type proc struct {
	name    string
	cmd     *exec.Cmd
	out     *tail
	exited  chan struct{} // closed once cmd.Wait returned; waitErr is then set
	waitErr error
	// expectExit is set before the command signals the process on purpose: from then on an
	// exit is not a crash.
	expectExit atomic.Bool
}

// procSpec says how to start a `latch` process.
type procSpec struct {
	name string
	bin  string
	args []string
	dir  string // working directory and HOME
	log  string // output is appended here
}

// startProc starts s with a minimal environment: Latch lets environment variables override
// configuration keys (DSN, SECRETS_COOKIE_0, ...), so the caller's own must not leak in.
func startProc(s procSpec) (*proc, error) {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "\n=== %s: start %s at %s ===\n", s.name, s.bin, time.Now().UTC().Format(time.RFC3339Nano))
	p := &proc{name: s.name, out: &tail{w: f}, exited: make(chan struct{})}
	p.cmd = exec.Command(s.bin, s.args...)
	p.cmd.Dir = s.dir
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.dir, "TMPDIR=" + os.TempDir()}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", s.name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	return p, nil
}

// kill sends SIGKILL and waits until the process is gone.
func (p *proc) kill() {
	p.expectExit.Store(true)
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// stop sends SIGTERM and SIGKILL after timeout; it reports a process that needed the SIGKILL
// or exited with an error.
func (p *proc) stop(timeout time.Duration) error {
	if err := p.crashed(); err != nil {
		return err
	}
	p.expectExit.Store(true)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("%s still ran %s after SIGTERM; killed", p.name, timeout)
	}
	if p.waitErr != nil {
		return fmt.Errorf("%s did not exit cleanly after SIGTERM: %v", p.name, p.waitErr)
	}
	return nil
}

// crashed returns an error when the process exited although nobody asked it to.
func (p *proc) crashed() error {
	select {
	case <-p.exited:
		if !p.expectExit.Load() {
			return fmt.Errorf("%s (pid %d) exited on its own: %v", p.name, p.cmd.Process.Pid, p.waitErr)
		}
	default:
	}
	return nil
}

// waitOutput waits until the process has written s.
func (p *proc) waitOutput(ctx context.Context, s string, timeout time.Duration) error {
	return p.poll(ctx, timeout, "log "+fmt.Sprintf("%q", s), func() error {
		if p.out.contains(s) {
			return nil
		}
		return errors.New("not yet")
	})
}

// waitReady polls GET <base>/health/ready on every base URL until all answer 200.
func (p *proc) waitReady(ctx context.Context, timeout time.Duration, bases ...string) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	return p.poll(ctx, timeout, "be ready", func() error {
		for _, b := range bases {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, b+"/health/ready", nil)
			if err != nil {
				return err
			}
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s/health/ready: %s", b, resp.Status)
			}
		}
		return nil
	})
}

func (p *proc) poll(ctx context.Context, timeout time.Duration, what string, cond func() error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not %s within %s: %v; last output:\n%s", p.name, what, timeout, err, p.out.String())
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before it could %s: %v; last output:\n%s", p.name, what, p.waitErr, p.out.String())
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// tail writes through to the log file and keeps the last tailSize bytes for messages and for
// waitOutput; safe for concurrent use (stdout and stderr write from two goroutines).
type tail struct {
	mu sync.Mutex
	w  io.Writer
	b  []byte
}

const tailSize = 32 << 10

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, _ = t.w.Write(p)
	t.b = append(t.b, p...)
	if len(t.b) > 2*tailSize {
		t.b = append([]byte(nil), t.b[len(t.b)-tailSize:]...)
	}
	return len(p), nil
}

func (t *tail) contains(s string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Contains(t.b, []byte(s))
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.b
	if len(b) > 4<<10 {
		b = b[len(b)-4<<10:]
	}
	return string(b)
}
