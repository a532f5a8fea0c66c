// Command templatebomb renders a hostile body template repeatedly, as a worker would for a
// hook whose template is a bomb, and reports the peak resident memory of this process and of
// its largest template evaluator child. It is the measurement behind "Template bombs" in
// docs/BENCHMARKS.md:
//
//	go run ./bench/templatebomb -bomb string -n 20
//
// Bombs: string (the std.repeat of 8 million characters), memory (an array of 10^8
// elements), cpu (2^40 additions in constant memory), good (a typical template, for contrast).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/latchhq/latch/webhooks"
)

var bombs = map[string]string{
	"string": `function(ctx) {x: std.repeat("x", 8000000)}`,
	"memory": `function(ctx) {x: std.length(std.range(1, 100000000))}`,
	"cpu":    `local f(n) = if n == 0 then 1 else f(n - 1) + f(n - 1); function(ctx) {x: f(40)}`,
	"good":   `function(ctx) {user_id: ctx.identity.id, email: ctx.identity.traits.email}`,
}

func main() {
	webhooks.RunTemplateEvaluatorIfChild()
	bomb := flag.String("bomb", "string", "string, memory, cpu or good")
	n := flag.Int("n", 20, "renders")
	conc := flag.Int("c", 1, "concurrent renders")
	settle := flag.Duration("settle", 0, "wait this long after the renders, then report again")
	flag.Parse()
	src, ok := bombs[*bomb]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown bomb %q\n", *bomb)
		os.Exit(2)
	}
	tpl, err := webhooks.LoadTemplate("base64://" + b64(src))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx := map[string]any{"identity": map[string]any{"id": "9f425a8d", "traits": map[string]any{"email": "ada@example.com"}}}

	fmt.Printf("before: self VmHWM %d MiB\n", vmHWM()>>20)
	start := time.Now()
	var (
		mu     sync.Mutex
		errs   = map[string]int{}
		wg     sync.WaitGroup
		next   = make(chan struct{})
		render = func() {
			_, _, err := tpl.Render(ctx)
			msg := "ok"
			if err != nil {
				msg = err.Error()
				if i := strings.LastIndex(msg, ": "); i > 0 && strings.Contains(msg, "<base64>: ") {
					msg = msg[:i] // drop the template's trace: one line per kind
				}
			}
			mu.Lock()
			errs[msg]++
			mu.Unlock()
		}
	)
	for range *conc {
		wg.Go(func() {
			for range next {
				render()
			}
		})
	}
	for range *n {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)
	fmt.Printf("%d renders of the %s bomb in %s (%s each), concurrency %d\n", *n, *bomb,
		elapsed.Round(time.Millisecond), (elapsed / time.Duration(*n)).Round(time.Microsecond), *conc)
	for msg, c := range errs {
		fmt.Printf("  %3d x %s\n", c, msg)
	}
	report()
	if *settle > 0 {
		time.Sleep(*settle)
		fmt.Printf("after %s:\n", *settle)
		report()
	}
}

// report prints this process's peak RSS and the largest peak RSS among its reaped children.
func report() {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	fmt.Printf("peak RSS: this process (VmHWM) %d MiB; largest evaluator child (ru_maxrss of reaped children) %d MiB\n",
		vmHWM()>>20, ru.Maxrss>>10)
}

// vmHWM is this process's peak resident set, in bytes.
func vmHWM() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb << 10
		}
	}
	return -1
}
