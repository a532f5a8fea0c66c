package reload

import (
	"crypto/rand"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchhq/latch/events/natstest"
	"github.com/latchhq/latch/tests/latchtest"
)

const (
	// reloadDeadline is how long after a rewrite of the config file every process must have
	// acted on it ("within a few seconds": processes poll every 2 s and act on a content read
	// the same twice, so 4 s at most, plus scheduling on a busy machine).
	reloadDeadline = 10 * time.Second
	// deliveryTimeout bounds one registration's trip: outbox, relay, JetStream, worker, receiver.
	deliveryTimeout = 30 * time.Second

	// hookKey is the key of the web_hook's url, as every process must name it when refusing.
	hookKey = "selfservice.flows.registration.after.password.hooks[1].config.url"
	// The watcher's log messages (cmd/latch/internal/config/reload.go).
	msgReloaded = "configuration reloaded"
	msgRefused  = "configuration reload refused; the previous configuration stays in force"
)

// TestReloadHooksInEveryProcess: one `latch serve` and two `latch worker`s read one file. The
// web_hook's url is rewritten from /a to /b: within seconds every process uses /b, without a
// restart. Then the file is rewritten with an invalid url: every process refuses it, naming the
// key, and deliveries keep going to /b.
func TestReloadHooksInEveryProcess(t *testing.T) {
	w := setup(t)

	// The hook in force at start-up.
	if path := w.waitDelivered(w.register(), deliveryTimeout); path != "/a" {
		t.Fatalf("the first registration's webhook arrived on %s, want /a", path)
	}

	// A valid edit: new registrations go to /b, in every process, without a restart.
	marks := w.marks()
	w.rewrite(w.recv.srv.URL + "/b")
	written := time.Now()
	for attempt := 1; ; attempt++ {
		started := time.Now()
		path := w.waitDelivered(w.register(), deliveryTimeout)
		if path == "/b" {
			t.Logf("first delivery to /b: registration %d, started %s after the rewrite", attempt, started.Sub(written).Round(time.Millisecond))
			break
		}
		if started.Sub(written) > reloadDeadline {
			t.Fatalf("a registration started %s after the config file changed still went to %s: "+
				"the processes did not put the new web_hook url in force (is config.Watch wired into latch serve and latch worker?)",
				started.Sub(written).Round(time.Millisecond), path)
		}
	}
	w.waitEveryProcessLogs(marks, written, "reload to /b", msgReloaded, "selfservice")
	const after = 10
	ids := make([]string, after)
	for i := range ids {
		ids[i] = w.register()
	}
	for i, id := range ids {
		if path := w.waitDelivered(id, deliveryTimeout); path != "/b" {
			t.Errorf("registration %d of %d after every process reloaded went to %s, want /b", i+1, after, path)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// An invalid edit: refused by every process, naming the key; /b stays in force.
	marks = w.marks()
	w.rewrite("not a url")
	written = time.Now()
	w.waitEveryProcessLogs(marks, written, "the invalid url to be refused", msgRefused, hookKey)
	for i := range 5 {
		if path := w.waitDelivered(w.register(), deliveryTimeout); path != "/b" {
			t.Errorf("registration %d after the invalid edit went to %s, want /b (the previous configuration)", i+1, path)
		}
	}
	for _, p := range w.procs() {
		if line := p.LineSince(marks[p], msgReloaded); line != "" {
			t.Errorf("%s reloaded the invalid configuration: %s", p.Name(), line)
		}
	}
	w.checkProcs()
}

// world is the test's processes and what they talk to.
type world struct {
	t         *testing.T
	cfgPath   string
	cfg       configValues
	publicURL string
	recv      *receiver
	serve     *latchtest.Process
	workers   []*latchtest.Process
	emails    string // unique prefix of this run's emails
	n         int    // registrations so far
}

// setup creates a fresh database, starts NATS and the receiver, writes the configuration (the
// web_hook on /a), starts `latch serve --dev` and waits for /health/ready, then starts two
// `latch worker --dev` and waits until each runs.
func setup(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, recv: newReceiver(t), emails: strings.ToLower(rand.Text()[:8])}
	dsn := latchtest.NewDatabase(t, "latch_reload")
	_, natsURL := natstest.StartEmbedded(t)
	ports := latchtest.FreePorts(t, 2)
	w.cfgPath = filepath.Join(t.TempDir(), "latch.yaml")
	w.cfg = configValues{DSN: dsn, PublicPort: ports[0], AdminPort: ports[1], NATSURL: natsURL, HookURL: w.recv.srv.URL + "/a"}
	writeConfig(t, w.cfgPath, w.cfg)
	w.publicURL = "http://127.0.0.1:" + strconv.Itoa(ports[0])
	adminURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])

	w.serve = startProc(t, "latch serve", "serve", "--dev", "-c", w.cfgPath)
	if err := w.serve.WaitReady(t.Context(), readyTimeout, w.publicURL, adminURL); err != nil {
		t.Fatalf("%v\n--- output ---\n%s", err, w.serve.Output())
	}
	for i := range 2 {
		p := startProc(t, fmt.Sprintf("latch worker %d", i+1), "worker", "--dev", "-c", w.cfgPath, "--metrics-addr", "127.0.0.1:0")
		w.workers = append(w.workers, p)
		w.waitFor(workerTimeout, p.Name()+" to run", func() (bool, string) {
			return p.LineSince(0, "webhook worker running") != "", "not yet"
		})
	}
	return w
}

func (w *world) procs() []*latchtest.Process {
	return append([]*latchtest.Process{w.serve}, w.workers...)
}

// rewrite replaces the config file atomically, with the web_hook pointing at hookURL.
func (w *world) rewrite(hookURL string) {
	w.t.Helper()
	w.cfg.HookURL = hookURL
	writeConfig(w.t, w.cfgPath, w.cfg)
}

// register signs a fresh identity up and returns its id; a failure fails the test.
func (w *world) register() string {
	w.t.Helper()
	w.n++
	email := fmt.Sprintf("reload-%s-%03d@example.org", w.emails, w.n)
	id, err := latchtest.Register(w.t.Context(), nil, w.publicURL, email, "a-long-enough-passphrase")
	if err != nil {
		w.checkProcs()
		w.t.Fatalf("register %s: %v", email, err)
	}
	return id
}

// waitDelivered waits until identity id's webhook reached the receiver and returns its path.
func (w *world) waitDelivered(id string, timeout time.Duration) string {
	w.t.Helper()
	var path string
	w.waitFor(timeout, "the webhook of identity "+id, func() (bool, string) {
		p, ok := w.recv.pathOf(id)
		path = p
		return ok, w.recv.summary()
	})
	return path
}

// marks notes where each process's output stands, so later checks read only what follows.
func (w *world) marks() map[*latchtest.Process]int {
	m := map[*latchtest.Process]int{}
	for _, p := range w.procs() {
		m[p] = p.Mark()
	}
	return m
}

// waitEveryProcessLogs waits until every process has logged, after its mark, a line with all of
// words, and fails unless all did within reloadDeadline of written.
func (w *world) waitEveryProcessLogs(marks map[*latchtest.Process]int, written time.Time, what string, words ...string) {
	w.t.Helper()
	timeout := max(time.Until(written.Add(reloadDeadline)), 0)
	w.waitFor(timeout, fmt.Sprintf("every process to log %q (%s)", words, what), func() (bool, string) {
		var missing []string
		for _, p := range w.procs() {
			if p.LineSince(marks[p], words...) == "" {
				missing = append(missing, p.Name())
			}
		}
		return len(missing) == 0, "not yet: " + strings.Join(missing, ", ")
	})
}

// checkProcs fails the test if a process died although nobody asked it to.
func (w *world) checkProcs() {
	w.t.Helper()
	for _, p := range w.procs() {
		if err := p.Crashed(); err != nil {
			w.t.Fatal(err)
		}
	}
}

// waitFor is latchtest.WaitFor that also fails fast when a process crashed.
func (w *world) waitFor(timeout time.Duration, what string, cond func() (bool, string)) {
	w.t.Helper()
	latchtest.WaitFor(w.t, timeout, what, func() (bool, string) {
		w.checkProcs()
		return cond()
	})
}
