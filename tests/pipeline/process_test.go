package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	stopTimeout = 20 * time.Second // how long clean-up waits after SIGTERM before SIGKILL
	outputTail  = 64 << 10         // how much of a process's output a failure prints at most
)

// proc is one running `latch` process with its own output buffer.
type proc struct {
	name    string
	cmd     *exec.Cmd
	out     *outputBuffer
	exited  chan struct{} // closed once cmd.Wait returned; waitErr is then set
	waitErr error
	// expectExit is set before the test signals the process itself: from then on an exit is
	// not a crash.
	expectExit atomic.Bool
}

// startProc starts `latch args...` in dir. Its clean-up stops it (SIGTERM, then SIGKILL after
// stopTimeout), fails the test if it did not exit cleanly, and prints its output when the test
// failed.
func startProc(t *testing.T, name, dir string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &outputBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(latchBin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = processEnv(dir)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = procAttr()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s (%s %s): %v", name, latchBin, strings.Join(args, " "), err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Error(err)
		}
		if p.out.contains("WARNING: DATA RACE") { // a binary built with LATCH_PIPELINE_RACE=1
			t.Errorf("%s reported a data race", p.name)
		}
		if t.Failed() {
			t.Logf("--- output of %s (pid %d), last %d KiB at most ---\n%s\n--- end of output (%s) ---",
				p.name, p.pid(), outputTail>>10, p.out.since(0), p.name)
		}
	})
	return p
}

// processEnv is a minimal environment: Latch lets environment variables override configuration
// keys (DSN, SECRETS_COOKIE_0, ...), so the developer's own must not leak in. LOG_LEVEL is passed
// through on purpose, to debug a failing run.
func processEnv(home string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "TMPDIR=" + os.TempDir()}
	if v := os.Getenv("LOG_LEVEL"); v != "" {
		env = append(env, "LOG_LEVEL="+v)
	}
	return env
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// signal sends sig and marks the coming exit as expected.
func (p *proc) signal(sig syscall.Signal) error {
	p.expectExit.Store(true)
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %v: %w", p.name, sig, err)
	}
	return nil
}

// waitExit waits up to timeout for the process to exit and reports whether it did.
func (p *proc) waitExit(timeout time.Duration) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.exited:
		return true
	case <-timer.C:
		return false
	}
}

// crashed returns an error when the process exited although nobody asked it to.
func (p *proc) crashed() error {
	select {
	case <-p.exited:
		if !p.expectExit.Load() {
			return fmt.Errorf("%s (pid %d) exited on its own: %v", p.name, p.pid(), p.waitErr)
		}
	default:
	}
	return nil
}

// stop ends the process for clean-up: SIGTERM, and SIGKILL after stopTimeout. A process the
// test killed or stopped itself is only reaped.
func (p *proc) stop() error {
	if err := p.crashed(); err != nil {
		return err
	}
	select {
	case <-p.exited:
		return nil
	default:
	}
	if err := p.signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	if !p.waitExit(stopTimeout) {
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s still ran %s after SIGTERM; killed", p.name, stopTimeout)
	}
	if p.waitErr != nil {
		return fmt.Errorf("%s did not exit cleanly after SIGTERM: %v", p.name, p.waitErr)
	}
	return nil
}

// waitOutput waits up to timeout until the process's output contains s.
func (p *proc) waitOutput(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%s to log %q", p.name, s), func() (bool, string) {
		if err := p.crashed(); err != nil {
			t.Fatalf("%v\n--- output ---\n%s", err, p.out.since(0))
		}
		return p.out.contains(s), "not yet"
	})
}

// outputBuffer collects a process's stdout and stderr; safe for concurrent use.
type outputBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *outputBuffer) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *outputBuffer) contains(s string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return bytes.Contains(o.b.Bytes(), []byte(s))
}

// since returns what was written after mark, at most the last outputTail bytes of it.
func (o *outputBuffer) since(mark int) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.b.Bytes()[mark:]
	if len(p) > outputTail {
		return fmt.Sprintf("[... %d bytes cut ...]\n%s", len(p)-outputTail, p[len(p)-outputTail:])
	}
	if len(p) == 0 {
		return "<no output>"
	}
	return string(p)
}

// waitFor polls cond every 50 ms until it holds, failing the test after timeout with what
// cond last said. Every wait in this package goes through here: tests wait on conditions,
// never on sleeps.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (ok bool, status string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, status := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s; last: %s", timeout, what, status)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("waiting for %s: %v", what, t.Context().Err())
		case <-tick.C:
		}
	}
}
