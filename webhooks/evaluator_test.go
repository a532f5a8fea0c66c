package webhooks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Template bombs: each must end as a template error, in its own child, and leave the pool
// rendering normally.
const (
	// cpuBomb runs 2^40 additions in constant memory.
	cpuBomb = `local f(n) = if n == 0 then 1 else f(n - 1) + f(n - 1); function(ctx) {x: f(40)}`
	// memoryBomb asks for an array of 10^8 elements: gigabytes.
	memoryBomb = `function(ctx) {x: std.length(std.range(1, 100000000))}`
	// stringBomb is the example: a string of 8 million characters.
	stringBomb = `function(ctx) {x: std.repeat("x", 8000000)}`
	// outputBomb renders about 2 MiB, cheaply.
	outputBomb = `local s = "` + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + `";
function(ctx) std.makeArray(20000, function(i) s)`
)

func TestTemplateBombsAreStopped(t *testing.T) {
	t.Parallel()
	good := mustTemplate(t, `function(ctx) {n: ctx.n}`)
	for _, tc := range []struct {
		name, src string
		want      error
		says      string
	}{
		{"cpu", cpuBomb, ErrTemplateTimeout, "ran for more than"},
		{"memory", memoryBomb, ErrTemplate, "memory cap"},
		// Near its cap the child's collector runs flat out, so which limit stops it first
		// varies; either is a template failure.
		{"string", stringBomb, nil, ""},
		{"output", outputBomb, ErrTemplate, "at most 1048576"},
	} {
		tpl := mustTemplate(t, tc.src)
		if tc.name == "output" {
			tpl.timeout = time.Minute // it renders; only its size is wrong, however slow the machine
		}
		body, cancel, err := tpl.Render(map[string]int{"n": 1})
		stopped := errors.Is(err, ErrTemplate)
		if !stopped || (tc.want != nil && !errors.Is(err, tc.want)) || cancel || body != nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s bomb: Render = %d bytes, cancel=%v, %v; want %v saying %q", tc.name, len(body), cancel, err, tc.want, tc.says)
		}
		t.Logf("%s bomb: %v", tc.name, err)
		// The pool replaced whatever the bomb killed.
		if body, _, err := good.Render(map[string]int{"n": 2}); err != nil || string(body) != `{"n":2}` {
			t.Errorf("after the %s bomb: Render = %s, %v", tc.name, body, err)
		}
	}
}

// The memory cap is the child's: the memory bomb dies of it, by name.
func TestTemplateMemoryCap(t *testing.T) {
	t.Parallel()
	_, _, err := mustTemplate(t, memoryBomb).Render(nil)
	if !errors.Is(err, ErrTemplate) || !strings.Contains(err.Error(), "memory cap") {
		t.Errorf("Render = %v, want a template error naming the memory cap", err)
	}
}

// A caller's deadline stops the evaluation, and says it was the caller's.
func TestTemplateRenderContextDeadline(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, _, err := mustTemplate(t, cpuBomb).RenderContext(ctx, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrTemplateTimeout) {
		t.Errorf("RenderContext = %v, want ErrTemplateTimeout wrapping context.DeadlineExceeded", err)
	}

	// Cancelled before it starts: nothing runs.
	done, stop := context.WithCancel(context.Background())
	stop()
	if _, _, err := mustTemplate(t, `function(ctx) {}`).RenderContext(done, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("RenderContext(cancelled) = %v, want context.Canceled", err)
	}
}

// Bombs rendering at the same time as good templates hold slots, never the good renders'
// results: every good render succeeds.
func TestTemplateBombsAmongGoodRenders(t *testing.T) {
	t.Parallel()
	good := mustTemplate(t, `function(ctx) {n: ctx.n * 2}`)
	bombs := []*Template{mustTemplate(t, memoryBomb), mustTemplate(t, stringBomb), mustTemplate(t, cpuBomb)}
	var wg sync.WaitGroup
	for _, b := range bombs {
		wg.Go(func() {
			if _, _, err := b.Render(nil); err == nil {
				t.Errorf("bomb %s rendered", b.src)
			}
		})
	}
	for i := range 32 {
		wg.Go(func() {
			body, _, err := good.Render(map[string]int{"n": i})
			if want := fmt.Sprintf(`{"n":%d}`, 2*i); err != nil || string(body) != want {
				t.Errorf("render %d = %s, %v; want %s", i, body, err, want)
			}
		})
	}
	wg.Wait()
}

// The worker's own memory does not grow with a bomb: it is the child's. Not parallel, so the
// high-water mark is this test's (parallel tests wait until the serial ones are done).
func TestTemplateBombLeavesCallerMemory(t *testing.T) {
	before := peakRSS(t)
	tpl := mustTemplate(t, stringBomb)
	for range 5 {
		if _, _, err := tpl.Render(nil); err == nil {
			t.Fatal("the bomb rendered")
		}
	}
	after := peakRSS(t)
	t.Logf("peak RSS of the test process: %d MiB before, %d MiB after 5 bombs", before>>20, after>>20)
	// Each bomb takes the child to its 128 MiB cap; evaluated here it would take more than that.
	if after-before > 32<<20 {
		t.Errorf("peak RSS grew by %d MiB rendering bombs", (after-before)>>20)
	}
}

// peakRSS is this process's VmHWM in bytes.
func peakRSS(t testing.TB) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}

// A child that answers out of protocol is killed and replaced: the parent never trusts a
// length it did not ask for.
func TestEvaluatorFrames(t *testing.T) {
	t.Parallel()
	var buf strings.Builder
	w := bufio.NewWriter(&buf)
	if err := writeFrame(w, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	_ = w.Flush()
	if b, err := readFrame(bufio.NewReader(strings.NewReader(buf.String())), 5); err != nil || string(b) != "hello" {
		t.Errorf("readFrame = %q, %v", b, err)
	}
	if _, err := readFrame(bufio.NewReader(strings.NewReader(buf.String())), 4); !errors.Is(err, errFrameTooLarge) {
		t.Errorf("readFrame over its limit = %v, want errFrameTooLarge", err)
	}
	huge := "\xff\xff\xff\xff"
	if _, err := readFrame(bufio.NewReader(strings.NewReader(huge)), MaxTemplateOutputBytes); !errors.Is(err, errFrameTooLarge) {
		t.Errorf("readFrame of a 4 GiB claim = %v, want errFrameTooLarge", err)
	}
	if _, err := readFrame(bufio.NewReader(strings.NewReader("\x00\x00\x00\x09short")), 100); err == nil {
		t.Error("a truncated frame was read")
	}
}

// The child's request loop refuses garbage rather than rendering it.
func TestServeEvaluationsHostileRequests(t *testing.T) {
	t.Parallel()
	for name, in := range map[string]string{
		"flags too short": "\x00\x00\x00\x01n\x00\x00\x00\x01s\x00\x00\x00\x01f",
		"huge name":       "\x7f\xff\xff\xff",
		"truncated":       "\x00\x00\x00\x05ab",
	} {
		var out strings.Builder
		if err := serveEvaluations(strings.NewReader(in), &out); err == nil {
			t.Errorf("%s: served", name)
		}
		if got := out.String(); got != evaluatorHello {
			t.Errorf("%s: wrote %q after the greeting", name, strings.TrimPrefix(got, evaluatorHello))
		}
	}
	var out strings.Builder
	if err := serveEvaluations(strings.NewReader(""), &out); err != nil {
		t.Errorf("an empty stdin (the parent closed it) = %v, want nil", err)
	}
}

// BenchmarkEvaluatorStart measures starting an evaluator child (this test binary re-executed,
// up to its greeting) and reaping it: what a render pays after a bomb killed its child.
func BenchmarkEvaluatorStart(b *testing.B) {
	for b.Loop() {
		e, err := startEvaluator()
		if err != nil {
			b.Fatal(err)
		}
		e.kill()
		e.reap()
	}
}

// Parsing is hostile input too: nesting deep enough to overflow the parser's stack kills an
// evaluator, not the process loading the configuration.
func TestLoadTemplateDeepNesting(t *testing.T) {
	t.Parallel()
	for name, src := range map[string]string{
		"parentheses": strings.Repeat("(", MaxTemplateBytes-1),
		"arrays":      strings.Repeat("[", MaxTemplateBytes/2) + strings.Repeat("]", MaxTemplateBytes/2),
		"unary":       strings.Repeat("-", MaxTemplateBytes-1) + "1",
	} {
		if _, err := LoadTemplate("base64://" + b64(src)); !errors.Is(err, ErrTemplate) {
			t.Errorf("%s: LoadTemplate = %v, want ErrTemplate", name, err)
		}
	}
}
