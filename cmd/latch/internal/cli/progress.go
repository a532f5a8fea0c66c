package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// isTerminal reports whether f is a terminal, where a progress bar may be drawn; a pipe, a
// file or a CI log gets no bar and no carriage returns.
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// progress shows how far a bulk command got: a bar on stderr when stderr is a terminal, nothing
// otherwise. Lines printed through it (per-item failures) do not tear the bar.
type progress struct {
	mu  sync.Mutex
	w   io.Writer
	bar *progressbar.ProgressBar // nil: not drawn
}

// newProgress returns the progress of total items. A bar is drawn only for more than one item
// and on a terminal (-q quiets stdout, not the terminal: `import -q > ids.txt` still shows it).
func (c *command) newProgress(total int, what string) *progress {
	p := &progress{w: c.std.Stderr}
	if total < 2 || !c.stderrIsTerminal() {
		return p
	}
	p.bar = progressbar.NewOptions(total,
		progressbar.OptionSetWriter(c.std.Stderr),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	return p
}

// step counts one item done.
func (p *progress) step() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Add(1)
	}
}

// println prints a line above the bar.
func (p *progress) println(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Clear()
	}
	fmt.Fprintf(p.w, format+"\n", args...)
}

// done removes the bar, so that the summary and the table start on a clean line.
func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Finish()
		_ = p.bar.Clear()
	}
}

// bulk runs work on every item that produce sends, at most workers at a time, and hands each
// result to done, one at a time, in the calling goroutine. When ctx ends (Ctrl-C), send
// returns false and produce should stop: items not yet started are never started, while those
// already sent finish with their requests not cancelled, because the server may have committed
// them already and the summary must say what really happened. bulk returns produce's error.
func bulk[T, R any](ctx context.Context, workers int, produce func(send func(T) bool) error,
	work func(context.Context, T) R, done func(T, R)) error {
	type result struct {
		item T
		r    R
	}
	jobs := make(chan T)
	results := make(chan result)
	workCtx := context.WithoutCancel(ctx) // each request is still bounded by the client's timeout
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for it := range jobs {
				results <- result{it, work(workCtx, it)}
			}
		})
	}
	var produceErr error
	go func() {
		defer close(jobs)
		produceErr = produce(func(it T) bool {
			if ctx.Err() != nil {
				return false
			}
			select {
			case <-ctx.Done():
				return false
			case jobs <- it:
				return true
			}
		})
	}()
	go func() {
		wg.Wait()
		close(results)
	}()
	for res := range results {
		done(res.item, res.r)
	}
	return produceErr // written before close(jobs), which happens before results is closed
}

// tally counts the outcomes of a bulk command for its summary.
type tally struct {
	total, ok, failed int
}

// summary is the closing line on stderr: "imported 998 of 1000 identities (2 failed)".
func (t tally) summary(verb, noun string, interrupted bool) string {
	s := fmt.Sprintf("%s %d of %d %s", verb, t.ok, t.total, noun)
	var notes []string
	if t.failed > 0 {
		notes = append(notes, fmt.Sprintf("%d failed", t.failed))
	}
	if rest := t.total - t.ok - t.failed; rest > 0 {
		notes = append(notes, fmt.Sprintf("%d not attempted", rest))
	}
	if interrupted {
		s = "interrupted: " + s
	}
	for i, n := range notes {
		if i == 0 {
			s += " (" + n
		} else {
			s += ", " + n
		}
		if i == len(notes)-1 {
			s += ")"
		}
	}
	return s
}
