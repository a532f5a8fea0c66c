package webhooks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Body templates are evaluated in child processes, never in the worker itself. go-jsonnet has
// no way to stop an evaluation from outside, and a template can loop or allocate without bound;
// only a process can be killed at a deadline and capped in memory by the kernel. The children
// are the running binary re-executed with evaluatorEnv set: RunTemplateEvaluatorIfChild, called
// first thing in main (and in TestMain), turns such a process into an evaluator that caps its
// own memory, then answers render requests on stdin/stdout, one at a time, until stdin closes.
//
// A small pool of long-lived children is reused across renders (a spawn costs milliseconds, a
// render through a warm child tens of microseconds). A child that misses its deadline is
// killed; one that dies (memory cap, crash) is reaped; either way the next render spawns a
// fresh one.

// Evaluator limits.
const (
	// MaxTemplateOutputBytes caps a rendered body: a larger one is a template error. Webhook
	// bodies are a few KiB; a megabyte is a bug or an attack, and it would be stored with every
	// delivery.
	MaxTemplateOutputBytes = 1 << 20
	// TemplateMemoryLimit caps an evaluator child's writable memory (RLIMIT_DATA: heap,
	// stacks and the binary's data, but not the address space Go merely reserves, which is why
	// RLIMIT_AS does not fit the Go runtime). An evaluation that needs more kills its child with
	// "out of memory", reported as a template error.
	// go-jsonnet needs about a kilobyte per value it builds, so a template that renders a body
	// near MaxTemplateOutputBytes needs tens of megabytes.
	TemplateMemoryLimit = 256 << 20
	// templateEvaluators bounds concurrent evaluations, and so the memory templates can take
	// at once (templateEvaluators × TemplateMemoryLimit). Renders are tens of microseconds; a
	// runaway holds a child for at most RenderTimeout.
	templateEvaluators = 4
	// evaluatorEnv marks a process as an evaluator child.
	evaluatorEnv = "LATCH_TEMPLATE_EVALUATOR"
	// evaluatorGrace is how long past its render deadline a child lets itself run before it
	// exits on its own: the parent kills it at the deadline, but a child whose parent died
	// mid-render must not spin forever.
	evaluatorGrace = 500 * time.Millisecond
	// maxEvaluatorMessage caps an error message from a child and the stderr kept from a dead
	// one: enough for Jsonnet's message and a short trace.
	maxEvaluatorMessage = 4 << 10
	// evaluatorStartTimeout bounds a child's start, until it says it is an evaluator.
	evaluatorStartTimeout = 10 * time.Second
	// evaluatorHello is what a child writes once its limits are set: a binary that is not
	// an evaluator (RunTemplateEvaluatorIfChild not called first) is told apart at once.
	evaluatorHello = "latch-template-evaluator/1\n"
	// maxCtxBytes caps the ctx a render sends to a child; an event's data is far smaller.
	maxCtxBytes = 16 << 20
)

// ErrTemplateMemory is a render whose evaluation exceeded TemplateMemoryLimit. It wraps
// ErrTemplate.
var ErrTemplateMemory = fmt.Errorf("%w: exceeded the evaluator's memory cap", ErrTemplate)

// Replies a child writes: a status byte, then one frame.
const (
	replyBody   = 'b' // the frame is the rendered body
	replyCancel = 'c' // the template raised error "cancel"; empty frame
	replyError  = 'e' // the frame is the error message
)

// RunTemplateEvaluatorIfChild turns this process into a template evaluator, and never returns,
// when it was started as one by a render; otherwise it returns at once. Call it first thing in
// main, and in TestMain of any test binary that renders templates: the evaluator is that same
// binary re-executed.
func RunTemplateEvaluatorIfChild() {
	if os.Getenv(evaluatorEnv) != "1" {
		return
	}
	if err := capEvaluator(); err != nil {
		fmt.Fprintf(os.Stderr, "latch template evaluator: %v\n", err)
		os.Exit(3)
	}
	if err := serveEvaluations(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "latch template evaluator: %v\n", err)
		os.Exit(3)
	}
	os.Exit(0)
}

// evaluatorPool hands renders to child evaluators, at most templateEvaluators at once.
type evaluatorPool struct {
	slots chan struct{}
	mu    sync.Mutex
	idle  []*evaluator
}

// evaluators is the process's pool: children are a per-process resource, like its threads.
var evaluators = &evaluatorPool{slots: make(chan struct{}, templateEvaluators)}

// renderJob is what one render asks of a child.
type renderJob struct {
	name    string
	src     string
	form    bool
	check   bool // only parse src (LoadTemplate): ctx is ignored and the body is empty
	timeout time.Duration
	ctx     []byte // JSON
}

// Request flags, the first byte of the flags frame.
const (
	flagForm  = 1 << iota // render form-encoded
	flagCheck             // parse only
)

// renderResult is a child's answer.
type renderResult struct {
	body    []byte
	cancel  bool
	failure string // the template's own error, as Jsonnet reported it
}

// render evaluates job in a child within job.timeout (from when a child takes it) and ctx. It
// waits for a free child as long as ctx allows: a slot is held at most job.timeout by anyone.
// A deadline of ctx returns an error wrapping ctx.Err(); the render's own, ErrTemplateTimeout.
func (p *evaluatorPool) render(ctx context.Context, job renderJob) (renderResult, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return renderResult{}, fmt.Errorf("%w: %s waited for a free evaluator: %w", ErrTemplateTimeout, job.name, ctx.Err())
	}
	defer func() { <-p.slots }()

	e, err := p.take()
	if err != nil {
		return renderResult{}, fmt.Errorf("%w %s: %v", ErrTemplate, job.name, err)
	}
	deadline := time.Now().Add(job.timeout)
	ctxDeadline, ctxBound := ctx.Deadline()
	if ctxBound && ctxDeadline.Before(deadline) {
		deadline = ctxDeadline
	} else {
		ctxBound = false
	}
	// A cancelled ctx (not only its deadline) stops the child at once.
	stop := context.AfterFunc(ctx, e.kill)
	res, err := e.do(job, deadline)
	stopped := stop()
	if err == nil && stopped {
		p.put(e)
		if res.failure != "" {
			return renderResult{}, fmt.Errorf("%w %s: %s", ErrTemplate, job.name, res.failure)
		}
		return res, nil
	}
	// The child is dead or out of step with us: kill it (a no-op if dead), reap it, and say why.
	e.kill()
	stderr := e.reap()
	switch {
	case err != nil && errors.Is(err, errChildAnswer):
		return renderResult{}, fmt.Errorf("%w %s: %v", ErrTemplate, job.name, err)
	case ctx.Err() != nil || (ctxBound && !time.Now().Before(deadline)):
		cause := ctx.Err()
		if cause == nil {
			cause = context.DeadlineExceeded
		}
		return renderResult{}, fmt.Errorf("%w: %s was stopped: %w", ErrTemplateTimeout, job.name, cause)
	case !time.Now().Before(deadline):
		return renderResult{}, fmt.Errorf("%w: %s ran for more than %s", ErrTemplateTimeout, job.name, job.timeout)
	case outOfMemory(stderr):
		return renderResult{}, fmt.Errorf("%w (%d MiB): %s", ErrTemplateMemory, TemplateMemoryLimit>>20, job.name)
	default:
		// Most likely the cap too, met where the runtime cannot say so (a failed mapping it
		// dereferences: SIGSEGV); a panic in go-jsonnet is recovered and reported as an error.
		why := firstLine(stderr)
		if why == "" {
			why = err.Error()
		}
		return renderResult{}, fmt.Errorf("%w %s: the evaluator died, most likely at its memory cap (%d MiB): %s",
			ErrTemplate, job.name, TemplateMemoryLimit>>20, why)
	}
}

// take returns an idle child, or starts one.
func (p *evaluatorPool) take() (*evaluator, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		e := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return e, nil
	}
	p.mu.Unlock()
	return startEvaluator()
}

// put returns a healthy child to the pool.
func (p *evaluatorPool) put(e *evaluator) {
	p.mu.Lock()
	p.idle = append(p.idle, e)
	p.mu.Unlock()
}

// evaluator is the parent's side of one child.
type evaluator struct {
	cmd    *exec.Cmd
	in     *os.File // the child's stdin
	out    *os.File // the child's stdout
	stderr *os.File // the child's stderr, read once it is dead
	r      *bufio.Reader
	w      *bufio.Writer
}

// errChildAnswer is a child that answered something other than the protocol.
var errChildAnswer = errors.New("evaluator answered out of protocol")

// startEvaluator starts a child: this binary with evaluatorEnv set. Its stdin, stdout and
// stderr are pipes with deadlines on our side; no goroutine serves them.
func startEvaluator() (*evaluator, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("starting an evaluator: %v", err)
	}
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	pipe := func() (r, w *os.File) {
		if err != nil {
			return nil, nil
		}
		r, w, err = os.Pipe()
		files = append(files, r, w)
		return r, w
	}
	inR, inW := pipe()
	outR, outW := pipe()
	errR, errW := pipe()
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("starting an evaluator: %v", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), evaluatorEnv+"=1", "GOTRACEBACK=none", "GOMAXPROCS=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a terminal's ^C is the parent's to handle
	if err := cmd.Start(); err != nil {
		closeAll()
		return nil, fmt.Errorf("starting an evaluator: %v", err)
	}
	inR.Close()
	outW.Close()
	errW.Close()
	e := &evaluator{cmd: cmd, in: inW, out: outR, stderr: errR,
		r: bufio.NewReader(outR), w: bufio.NewWriter(inW)}
	if err := e.hello(); err != nil {
		e.kill()
		why := firstLine(e.reap())
		return nil, fmt.Errorf("starting an evaluator: %v %s (is webhooks.RunTemplateEvaluatorIfChild called first in main and TestMain?)", err, why)
	}
	return e, nil
}

// hello reads the child's greeting.
func (e *evaluator) hello() error {
	if err := e.out.SetReadDeadline(time.Now().Add(evaluatorStartTimeout)); err != nil {
		return err
	}
	got := make([]byte, len(evaluatorHello))
	if _, err := io.ReadFull(e.r, got); err != nil {
		return err
	}
	if string(got) != evaluatorHello {
		return fmt.Errorf("%w: greeted with %q", errChildAnswer, got)
	}
	return nil
}

// do sends job and reads the answer, both before deadline.
func (e *evaluator) do(job renderJob, deadline time.Time) (renderResult, error) {
	if err := e.in.SetWriteDeadline(deadline); err != nil {
		return renderResult{}, err
	}
	if err := e.out.SetReadDeadline(deadline); err != nil {
		return renderResult{}, err
	}
	var flags [9]byte
	if job.form {
		flags[0] |= flagForm
	}
	if job.check {
		flags[0] |= flagCheck
	}
	binary.BigEndian.PutUint64(flags[1:], uint64(job.timeout))
	for _, f := range [][]byte{[]byte(job.name), []byte(job.src), flags[:], job.ctx} {
		if err := writeFrame(e.w, f); err != nil {
			return renderResult{}, err
		}
	}
	if err := e.w.Flush(); err != nil {
		return renderResult{}, err
	}
	status, err := e.r.ReadByte()
	if err != nil {
		return renderResult{}, err
	}
	limit := MaxTemplateOutputBytes
	if status == replyError {
		limit = maxEvaluatorMessage
	}
	payload, err := readFrame(e.r, limit)
	if err != nil {
		if errors.Is(err, errFrameTooLarge) {
			return renderResult{}, fmt.Errorf("%w: %v", errChildAnswer, err)
		}
		return renderResult{}, err
	}
	switch status {
	case replyBody:
		return renderResult{body: payload}, nil
	case replyCancel:
		return renderResult{cancel: true}, nil
	case replyError:
		if len(payload) == 0 {
			payload = []byte("failed")
		}
		return renderResult{failure: string(payload)}, nil
	default:
		return renderResult{}, fmt.Errorf("%w: status %q", errChildAnswer, status)
	}
}

// kill ends the child; safe to call more than once, and on a dead child.
func (e *evaluator) kill() { _ = e.cmd.Process.Kill() }

// reap waits for a killed or dead child, closes our ends of its pipes and returns the start of
// what it wrote to stderr (the Go runtime's "out of memory" when the cap stopped it).
func (e *evaluator) reap() string {
	e.in.Close()
	e.out.Close()
	_ = e.cmd.Wait()
	// The child is gone, so every write end is closed and this read ends.
	b, _ := io.ReadAll(io.LimitReader(e.stderr, maxEvaluatorMessage))
	e.stderr.Close()
	return string(b)
}

// outOfMemory reports whether a dead child's stderr says the kernel refused it memory: the Go
// runtime says "out of memory", or, when a mapping fails, the errno's text.
func outOfMemory(stderr string) bool {
	return strings.Contains(stderr, "out of memory") || strings.Contains(stderr, "cannot allocate memory")
}

// firstLine is the first non-empty line of s, for an error message.
func firstLine(s string) string {
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

// errFrameTooLarge is a frame longer than its reader allows.
var errFrameTooLarge = errors.New("frame too large")

// writeFrame writes b with a 4-byte big-endian length.
func writeFrame(w *bufio.Writer, b []byte) error {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

// readFrame reads one frame of at most limit bytes.
func readFrame(r *bufio.Reader, limit int) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if uint64(size) > uint64(limit) {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", errFrameTooLarge, size, limit)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// truncate cuts s to at most n bytes, for messages.
func truncate(s []byte, n int) []byte {
	if len(s) <= n {
		return s
	}
	return append(bytes.Clone(s[:n-3]), "..."...)
}
