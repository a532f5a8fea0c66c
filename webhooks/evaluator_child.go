package webhooks

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-jsonnet"
	"github.com/google/go-jsonnet/ast"
)

// The child's side of template evaluation: what a process started with evaluatorEnv runs.

// evaluatorCacheSize bounds the parsed templates a child keeps: a configuration has a handful,
// and a reload that changes them all just starts the cache afresh.
const evaluatorCacheSize = 64

// evaluatorNice is the scheduling priority an evaluator gives itself (0 is normal, 19 lowest).
const evaluatorNice = 10

// capEvaluator sets the child's limits before it reads anything a template controls: the
// kernel refuses it memory past TemplateMemoryLimit (the Go runtime then dies with "out of
// memory"), the garbage collector works harder as it nears the cap, one thread evaluates, at a
// lower priority than the worker.
func capEvaluator() error {
	limit := uint64(TemplateMemoryLimit * evaluatorMemoryFactor)
	lim := syscall.Rlimit{Cur: limit, Max: limit}
	if err := syscall.Setrlimit(syscall.RLIMIT_DATA, &lim); err != nil {
		return fmt.Errorf("capping memory: %v", err)
	}
	debug.SetMemoryLimit(TemplateMemoryLimit * 3 / 4)
	runtime.GOMAXPROCS(1)
	// A template spinning until its deadline must not take CPU from the deliveries the worker
	// is making meanwhile; lowering our own priority needs no privilege.
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, 0, evaluatorNice)
	return nil
}

// serveEvaluations answers render requests from in on out, one at a time, until in ends (the
// parent closed it or died). A request is four frames: the template's name, its source, flags
// (a form byte and the timeout, 8 bytes) and ctx as JSON. The answer is a status byte and a frame.
func serveEvaluations(in io.Reader, out io.Writer) error {
	r := bufio.NewReaderSize(in, 64<<10)
	w := bufio.NewWriterSize(out, 64<<10)
	if _, err := io.WriteString(w, evaluatorHello); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	cache := map[string]ast.Node{}
	for {
		name, err := readFrame(r, maxEvaluatorMessage)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading a request: %v", err)
		}
		src, err := readFrame(r, MaxTemplateBytes)
		if err != nil {
			return fmt.Errorf("reading a request: %v", err)
		}
		flags, err := readFrame(r, 9)
		if err != nil || len(flags) != 9 {
			return fmt.Errorf("reading a request: flags: %v", err)
		}
		ctx, err := readFrame(r, maxCtxBytes)
		if err != nil {
			return fmt.Errorf("reading a request: %v", err)
		}
		// The parent kills us at the deadline; this watchdog only matters if it died meanwhile.
		timeout := time.Duration(binary.BigEndian.Uint64(flags[1:]))
		watchdog := time.AfterFunc(timeout+evaluatorGrace, func() { os.Exit(4) })
		status, payload := evaluate(cache, string(name), string(src), flags[0], ctx)
		watchdog.Stop()
		if err := w.WriteByte(status); err != nil {
			return err
		}
		if err := writeFrame(w, payload); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
}

// evaluate renders one template: replyBody with the body, replyCancel, or replyError with a
// message. With flagCheck it only parses the template (replyBody, empty). A panic inside
// go-jsonnet is the template's failure, not the child's end.
func evaluate(cache map[string]ast.Node, name, src string, flags byte, ctx []byte) (status byte, payload []byte) {
	defer func() {
		if p := recover(); p != nil {
			status, payload = replyError, []byte(fmt.Sprintf("evaluation panicked: %v", p))
		}
	}()
	fail := func(msg string) (byte, []byte) {
		return replyError, truncate([]byte(msg), maxEvaluatorMessage)
	}
	key := name + "\x00" + src
	node, ok := cache[key]
	if !ok {
		var err error
		if node, err = jsonnet.SnippetToAST(name, src); err != nil {
			return fail(err.Error())
		}
		if len(cache) >= evaluatorCacheSize {
			clear(cache)
		}
		cache[key] = node
	}
	if flags&flagCheck != 0 {
		return replyBody, nil
	}
	var value any
	if err := json.Unmarshal(ctx, &value); err != nil {
		return fail("decoding ctx: " + err.Error())
	}

	vm := jsonnet.MakeVM()
	vm.MaxStack = templateMaxStack
	vm.Importer(noImports{})
	vm.SetTraceOut(io.Discard)
	vm.ErrorFormatter.SetMaxStackTraceSize(templateTraceFrames)
	vm.NativeFunction(&jsonnet.NativeFunction{
		Name: ctxNative,
		Func: func([]any) (any, error) { return value, nil },
	})
	vm.TLANode("ctx", ctxCall)
	out, err := vm.Evaluate(node)
	if err != nil {
		var rt jsonnet.RuntimeError
		// Kratos looks for "RUNTIME ERROR: cancel" in the error text, so any message that
		// starts with "cancel" skips the webhook there; so it does here.
		if errors.As(err, &rt) && strings.HasPrefix(rt.Msg, "cancel") {
			return replyCancel, nil
		}
		return fail(strings.TrimSpace(vm.ErrorFormatter.Format(err)))
	}
	var body []byte
	if flags&flagForm != 0 {
		body, err = formBody(out)
	} else {
		body, err = compactJSON(out)
	}
	if err != nil {
		return fail(err.Error())
	}
	if len(body) > MaxTemplateOutputBytes {
		return fail(fmt.Sprintf("output is %d bytes, at most %d", len(body), MaxTemplateOutputBytes))
	}
	return replyBody, body
}
