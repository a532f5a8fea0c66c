package latchtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
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
	// DefaultStopTimeout is how long Stop waits after SIGTERM before it sends SIGKILL, when
	// Cmd.StopTimeout is zero.
	DefaultStopTimeout = 20 * time.Second
	// OutputTail is how much of a process's output Output, OutputSince and Dump return at most:
	// the end, where a failure shows.
	OutputTail = 64 << 10
)

// Cmd describes a `latch` process to start.
type Cmd struct {
	// Name says which process a message is about: "latch serve", "latch worker 1".
	Name string
	// Bin is the binary to run, as BuildBinary returned it.
	Bin string
	// Args follow the binary: "serve", "--dev", "-c", path.
	Args []string
	// Dir is the process's working directory and HOME (`--dev` keeps its local data there). It
	// is created when missing. Required.
	Dir string
	// StopTimeout is how long Stop waits after SIGTERM before it sends SIGKILL; zero means
	// DefaultStopTimeout.
	StopTimeout time.Duration
}

// Process is one running `latch` process. Its stdout and stderr (the logs) are kept in memory,
// for assertions and for failure messages.
type Process struct {
	name        string
	stopTimeout time.Duration
	cmd         *exec.Cmd
	out         outputBuffer
	exited      chan struct{} // closed once cmd.Wait returned; waitErr is then set
	waitErr     error
	// expectExit is set before anybody signals the process on purpose: from then on an exit is
	// not a crash.
	expectExit atomic.Bool
}

// StartProcess starts c with a minimal environment. The caller must Stop or Kill it; tests use
// Start, which does that for them.
func StartProcess(c Cmd) (*Process, error) {
	if c.Dir == "" {
		return nil, fmt.Errorf("start %s: Cmd.Dir is required", c.Name)
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("start %s: %w", c.Name, err)
	}
	p := &Process{name: c.Name, stopTimeout: c.StopTimeout, exited: make(chan struct{})}
	if p.stopTimeout == 0 {
		p.stopTimeout = DefaultStopTimeout
	}
	p.cmd = exec.Command(c.Bin, c.Args...)
	p.cmd.Dir = c.Dir
	p.cmd.Env = processEnv(c.Dir)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s %s): %w", c.Name, c.Bin, strings.Join(c.Args, " "), err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Start starts c for t. Its clean-up stops the process (Stop), fails t unless it exited cleanly
// or reported a data race (a binary built with -race), and prints its output when t failed.
func Start(t testing.TB, c Cmd) *Process {
	t.Helper()
	p, err := StartProcess(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Error(err)
		}
		if p.OutputContains("WARNING: DATA RACE") {
			t.Errorf("%s reported a data race", p.name)
		}
		if t.Failed() {
			t.Log(p.Dump())
		}
	})
	return p
}

// processEnv is a minimal environment: Latch, like Kratos, lets environment variables override
// configuration keys (DSN, SECRETS_COOKIE_0, ...), so the developer's own must not leak in.
// LOG_LEVEL is passed through on purpose, to debug a failing run.
func processEnv(home string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "TMPDIR=" + os.TempDir()}
	if v := os.Getenv("LOG_LEVEL"); v != "" {
		env = append(env, "LOG_LEVEL="+v)
	}
	return env
}

// Name is Cmd.Name.
func (p *Process) Name() string { return p.name }

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig and marks the coming exit as expected, so that it is not a crash.
func (p *Process) Signal(sig syscall.Signal) error {
	p.expectExit.Store(true)
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %v: %w", p.name, sig, err)
	}
	return nil
}

// Kill sends SIGKILL and waits until the process is gone.
func (p *Process) Kill() {
	p.expectExit.Store(true)
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// WaitExit waits up to timeout for the process to exit and reports whether it did.
func (p *Process) WaitExit(timeout time.Duration) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.exited:
		return true
	case <-timer.C:
		return false
	}
}

// ExitErr is what waiting for the process returned (nil for exit status 0); nil while it runs.
func (p *Process) ExitErr() error {
	select {
	case <-p.exited:
		return p.waitErr
	default:
		return nil
	}
}

// Crashed returns an error when the process exited although nobody asked it to.
func (p *Process) Crashed() error {
	select {
	case <-p.exited:
		if !p.expectExit.Load() {
			return fmt.Errorf("%s (pid %d) exited on its own: %v", p.name, p.Pid(), p.waitErr)
		}
	default:
	}
	return nil
}

// Stop ends the process: SIGTERM, and SIGKILL after the stop timeout. It returns an error when
// the process had crashed, needed the SIGKILL or did not exit cleanly. A process the test
// signalled or killed itself, and that is gone, is only reaped.
func (p *Process) Stop() error {
	if err := p.Crashed(); err != nil {
		return err
	}
	select {
	case <-p.exited:
		return nil
	default:
	}
	if err := p.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	if !p.WaitExit(p.stopTimeout) {
		p.Kill()
		return fmt.Errorf("%s still ran %s after SIGTERM; killed", p.name, p.stopTimeout)
	}
	if p.waitErr != nil {
		return fmt.Errorf("%s did not exit cleanly after SIGTERM: %v", p.name, p.waitErr)
	}
	return nil
}

// WaitReady polls GET <base>/health/ready for every base URL until all answer 200. It fails when
// timeout passes, the process exits or ctx ends.
func (p *Process) WaitReady(ctx context.Context, timeout time.Duration, baseURLs ...string) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var errs []error
		for _, u := range baseURLs {
			if err := probe(ctx, hc, u+"/health/ready"); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w", p.name, timeout, errors.Join(errs...))
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before it was ready: %v", p.name, p.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to be ready: %w", p.name, ctx.Err())
		case <-tick.C:
		}
	}
}

func probe(ctx context.Context, hc *http.Client, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return nil
}

// WaitOutput waits up to timeout until the process's output contains s, failing t when it does
// not or when the process crashed meanwhile.
func (p *Process) WaitOutput(t testing.TB, s string, timeout time.Duration) {
	t.Helper()
	WaitFor(t, timeout, fmt.Sprintf("%s to log %q", p.name, s), func() (bool, string) {
		if err := p.Crashed(); err != nil {
			t.Fatalf("%v\n--- output ---\n%s", err, p.Output())
		}
		return p.OutputContains(s), "not yet"
	})
}

// Mark is where the output stands now, for OutputSince and LineSince: checks that must read only
// what a process wrote after some moment.
func (p *Process) Mark() int { return p.out.len() }

// Output is what the process wrote so far, at most the last OutputTail bytes of it.
func (p *Process) Output() string { return p.out.since(0) }

// OutputSince is what the process wrote after mark, at most the last OutputTail bytes of it.
func (p *Process) OutputSince(mark int) string { return p.out.since(mark) }

// OutputContains reports whether the process has written s.
func (p *Process) OutputContains(s string) bool { return p.out.contains(s) }

// LineSince returns the first line written after mark that contains every one of words, or "".
func (p *Process) LineSince(mark int, words ...string) string { return p.out.lineSince(mark, words...) }

// Dump is the process's output framed for a failure message, with its name and pid.
func (p *Process) Dump() string {
	return fmt.Sprintf("--- output of %s (pid %d), last %d KiB at most ---\n%s\n--- end of output (%s) ---",
		p.name, p.Pid(), OutputTail>>10, p.Output(), p.name)
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

func (o *outputBuffer) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Len()
}

func (o *outputBuffer) contains(s string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return bytes.Contains(o.b.Bytes(), []byte(s))
}

func (o *outputBuffer) lineSince(mark int, words ...string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	for line := range strings.SplitSeq(string(o.b.Bytes()[mark:]), "\n") {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			return line
		}
	}
	return ""
}

func (o *outputBuffer) since(mark int) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.b.Bytes()[mark:]
	if len(p) > OutputTail {
		return fmt.Sprintf("[... %d bytes cut ...]\n%s", len(p)-OutputTail, p[len(p)-OutputTail:])
	}
	if len(p) == 0 {
		return "<no output>"
	}
	return string(p)
}
