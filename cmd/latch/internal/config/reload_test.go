package config

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The watcher's tests poll every reloadTestInterval and wait up to reloadTestTimeout for what
// they expect; they wait on conditions (a log line, an apply call), never on sleeps.
const (
	reloadTestInterval = 10 * time.Millisecond
	reloadTestTimeout  = 10 * time.Second
)

// hookKey is the key of the web_hook's url in reloadYAML.
const hookKey = "selfservice.flows.registration.after.password.hooks[1].config.url"

// reloadYAML is a configuration whose registration web_hook calls url; extra is appended as is
// (top-level keys). It loads with --dev, or without it for a worker (no cookie secret).
func reloadYAML(url, extra string) string {
	return `dsn: postgres://latch@db.example:5432/latch
nats: {url: "nats://nats.example:4222"}
webhooks: {signing_secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]}
selfservice:
  flows:
    registration:
      after:
        password:
          hooks:
            - hook: session
            - hook: web_hook
              config: {id: target, url: "` + url + `", method: POST}
` + extra
}

// hookURL is the url of reloadYAML's web_hook in cfg.
func hookURL(t *testing.T, cfg *Config) string {
	t.Helper()
	hooks := cfg.Selfservice.Flows.Registration.After.Password.Hooks
	if len(hooks) != 2 {
		t.Fatalf("want 2 registration hooks, got %d", len(hooks))
	}
	var c struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(hooks[1].Config, &c); err != nil {
		t.Fatal(err)
	}
	return c.URL
}

// logBuffer collects a logger's output; the watcher writes while the test reads.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// line returns the first logged line that contains every one of words, or "".
func (l *logBuffer) line(words ...string) string {
	for _, ln := range strings.Split(l.String(), "\n") {
		if lineWith(ln, words...) {
			return ln
		}
	}
	return ""
}

// recorder is a fake ApplyFunc: it records every configuration it is given and fails while
// err is set.
type recorder struct {
	mu    sync.Mutex
	calls []*Config
	err   error
}

func (r *recorder) apply(cfg *Config) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, cfg)
	return r.err
}

func (r *recorder) failWith(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

func (r *recorder) applied() []*Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Config(nil), r.calls...)
}

// reloadEnv is one watcher under test: its file, what it applied and what it logged.
type reloadEnv struct {
	t    *testing.T
	path string
	rec  *recorder
	logs *logBuffer
}

// startReload writes content to a fresh file, loads it as `latch serve --dev` would, and runs
// Watch on it until the test ends (clean-up cancels it and waits for it to return).
func startReload(t *testing.T, content string) *reloadEnv {
	t.Helper()
	e := newReloadEnv(t, content)
	cfg, _, err := Load([]string{e.path}, true, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	e.run(func(ctx context.Context, log *slog.Logger) {
		Watch(ctx, []string{e.path}, true, nil, reloadTestInterval, cfg, e.rec.apply, log)
	})
	return e
}

func newReloadEnv(t *testing.T, content string) *reloadEnv {
	t.Helper()
	e := &reloadEnv{t: t, path: filepath.Join(t.TempDir(), "latch.yaml"), rec: &recorder{}, logs: &logBuffer{}}
	e.write(content)
	return e
}

// run runs watch in a goroutine until the test ends, and joins it.
func (e *reloadEnv) run(watch func(ctx context.Context, log *slog.Logger)) {
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watch(ctx, log)
	}()
	e.t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(reloadTestTimeout):
			e.t.Error("Watch did not return after its context ended")
		}
		if e.t.Failed() {
			e.t.Logf("--- watcher log ---\n%s", e.logs.String())
		}
	})
}

// write replaces the file's content in place, as an editor that truncates and writes does.
func (e *reloadEnv) write(content string) {
	e.t.Helper()
	if err := os.WriteFile(e.path, []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// rename replaces the file atomically: a new file renamed over the old one, as `mv`, most
// editors' "safe write" and configuration management tools do.
func (e *reloadEnv) rename(content string) {
	e.t.Helper()
	tmp := e.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, e.path); err != nil {
		e.t.Fatal(err)
	}
}

// waitApplied waits until apply has been called n times in all and returns the last call.
func (e *reloadEnv) waitApplied(n int) *Config {
	e.t.Helper()
	eventually(e.t, fmt.Sprintf("apply to be called %d time(s)", n), func() bool { return len(e.rec.applied()) >= n })
	calls := e.rec.applied()
	if len(calls) != n {
		e.t.Fatalf("apply was called %d times, want %d", len(calls), n)
	}
	return calls[n-1]
}

// waitLog waits until a logged line contains every one of words and returns it.
func (e *reloadEnv) waitLog(words ...string) string {
	e.t.Helper()
	eventually(e.t, fmt.Sprintf("a log line with %q", words), func() bool { return e.logs.line(words...) != "" })
	return e.logs.line(words...)
}

// eventually polls cond until it holds, failing the test after reloadTestTimeout.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(reloadTestTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", reloadTestTimeout, what)
		}
		time.Sleep(reloadTestInterval)
	}
}

func TestReloadAppliesAValidEdit(t *testing.T) {
	t.Parallel()
	e := startReload(t, reloadYAML("http://hooks.example/a", ""))
	e.write(reloadYAML("http://hooks.example/b", ""))

	cfg := e.waitApplied(1)
	if got := hookURL(t, cfg); got != "http://hooks.example/b" {
		t.Errorf("applied hook url = %q, want http://hooks.example/b", got)
	}
	line := e.waitLog("level=INFO", `msg="configuration reloaded"`)
	if !strings.Contains(line, "changed=[selfservice]") {
		t.Errorf("the reload line should list the changed top-level keys: %s", line)
	}
}

func TestReloadRefusesAnInvalidEdit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, content, key string
	}{
		{"web_hook url", reloadYAML("not a url", ""), hookKey},
		{"port out of range", reloadYAML("http://hooks.example/a", "serve: {public: {port: 70000}}\n"), "serve.public.port"},
		{"unknown hook", strings.Replace(reloadYAML("http://hooks.example/a", ""), "hook: session", "hook: sesion", 1),
			"selfservice.flows.registration.after.password.hooks[0].hook"},
		{"not YAML", reloadYAML("http://hooks.example/a", "serve: [\n"), "yaml:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := startReload(t, reloadYAML("http://hooks.example/a", ""))
			e.write(tc.content)

			line := e.waitLog("level=ERROR", reloadRefused)
			if !strings.Contains(line, tc.key) {
				t.Errorf("the refusal should name %s: %s", tc.key, line)
			}
			if n := len(e.rec.applied()); n != 0 {
				t.Fatalf("apply was called %d times for a configuration that fails validation", n)
			}

			// The watcher keeps going: the next valid edit is applied.
			e.write(reloadYAML("http://hooks.example/c", ""))
			if got := hookURL(t, e.waitApplied(1)); got != "http://hooks.example/c" {
				t.Errorf("applied hook url = %q, want http://hooks.example/c", got)
			}
		})
	}
}

func TestReloadRefusesAnImmutableChange(t *testing.T) {
	t.Parallel()
	const url = "http://hooks.example/a"
	for _, tc := range []struct {
		name, content, key string
	}{
		{"serve port", reloadYAML(url, "serve: {public: {port: 4500}}\n"), "serve.public.port"},
		{"dsn", strings.Replace(reloadYAML(url, ""), "db.example", "db2.example", 1), "dsn"},
		{"log level", reloadYAML(url, "log: {level: debug}\n"), "log.level"},
		// The whole reload is refused: the hook url changes too, and must not be applied.
		{"with a hook change", reloadYAML("http://hooks.example/b", "hashers: {algorithm: argon2}\n"), "hashers.algorithm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := startReload(t, reloadYAML(url, ""))
			e.write(tc.content)

			line := e.waitLog("level=ERROR", reloadRefused)
			if !strings.Contains(line, tc.key) || !strings.Contains(line, "cannot change while the process runs") {
				t.Errorf("the refusal should name %s as immutable: %s", tc.key, line)
			}
			if n := len(e.rec.applied()); n != 0 {
				t.Fatalf("apply was called %d times for a reload that changes %s", n, tc.key)
			}
		})
	}
}

func TestReloadApplyErrorKeepsThePreviousConfiguration(t *testing.T) {
	t.Parallel()
	e := startReload(t, reloadYAML("http://hooks.example/a", ""))
	e.rec.failWith(errors.New("config: " + hookKey + ": refused by the test"))
	e.write(reloadYAML("http://hooks.example/b", ""))
	e.waitApplied(1)
	line := e.waitLog("level=ERROR", reloadRefused)
	if !strings.Contains(line, "refused by the test") {
		t.Errorf("the refusal should carry apply's error: %s", line)
	}

	// /a is still the configuration in force: going back to it changes nothing, so apply is not
	// called; the next real change is compared with /a, not with the refused /b.
	e.rec.failWith(nil)
	unchanged := func() int { return strings.Count(e.logs.String(), "did not change") }
	before := unchanged()
	e.write("# back to a\n" + reloadYAML("http://hooks.example/a", ""))
	eventually(t, "the watcher to find the configuration unchanged", func() bool { return unchanged() > before })
	e.write(reloadYAML("http://hooks.example/c", ""))
	if got := hookURL(t, e.waitApplied(2)); got != "http://hooks.example/c" {
		t.Errorf("applied hook url = %q, want http://hooks.example/c", got)
	}
}

func TestReloadSeesReplacedFiles(t *testing.T) {
	t.Parallel()
	t.Run("atomic rename", func(t *testing.T) {
		t.Parallel()
		e := startReload(t, reloadYAML("http://hooks.example/a", ""))
		e.rename(reloadYAML("http://hooks.example/b", ""))
		if got := hookURL(t, e.waitApplied(1)); got != "http://hooks.example/b" {
			t.Errorf("applied hook url = %q, want http://hooks.example/b", got)
		}
	})

	t.Run("kubernetes configmap", func(t *testing.T) {
		t.Parallel()
		// A mounted ConfigMap: latch.yaml -> ..data/latch.yaml, ..data -> ..v1. An update writes
		// ..v2 and swaps the ..data symlink atomically; latch.yaml itself is never touched.
		dir := t.TempDir()
		version := func(name, content string) {
			if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name, "latch.yaml"), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(name, filepath.Join(dir, "..data_tmp")); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
				t.Fatal(err)
			}
		}
		version("..v1", reloadYAML("http://hooks.example/a", ""))
		path := filepath.Join(dir, "latch.yaml")
		if err := os.Symlink(filepath.Join("..data", "latch.yaml"), path); err != nil {
			t.Fatal(err)
		}
		e := &reloadEnv{t: t, path: path, rec: &recorder{}, logs: &logBuffer{}}
		cfg, _, err := Load([]string{path}, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		e.run(func(ctx context.Context, log *slog.Logger) {
			Watch(ctx, []string{path}, true, nil, reloadTestInterval, cfg, e.rec.apply, log)
		})
		version("..v2", reloadYAML("http://hooks.example/b", ""))
		if got := hookURL(t, e.waitApplied(1)); got != "http://hooks.example/b" {
			t.Errorf("applied hook url = %q, want http://hooks.example/b", got)
		}
	})
}

func TestReloadSurvivesAMissingFile(t *testing.T) {
	t.Parallel()
	e := startReload(t, reloadYAML("http://hooks.example/a", ""))
	if err := os.Remove(e.path); err != nil {
		t.Fatal(err)
	}
	line := e.waitLog("level=WARN", "cannot read the configuration")
	if !strings.Contains(line, "the previous configuration stays in force") {
		t.Errorf("unexpected line: %s", line)
	}
	e.write(reloadYAML("http://hooks.example/b", ""))
	if got := hookURL(t, e.waitApplied(1)); got != "http://hooks.example/b" {
		t.Errorf("applied hook url = %q, want http://hooks.example/b", got)
	}
	if n := strings.Count(e.logs.String(), "cannot read the configuration"); n != 1 {
		t.Errorf("a missing file should be logged once, not at every poll; logged %d times", n)
	}
}

// TestReloadPolls drives the watcher one poll at a time, to pin down when it acts.
func TestReloadPolls(t *testing.T) {
	t.Parallel()
	e := newReloadEnv(t, reloadYAML("http://hooks.example/a", ""))
	start, _, err := Load([]string{e.path}, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &configWatcher{
		paths:   []string{e.path},
		load:    func() (*Config, []string, error) { return Load([]string{e.path}, true, nil) },
		apply:   e.rec.apply,
		log:     slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		current: start,
	}
	polls := func(n int) {
		for range n {
			w.poll()
		}
	}
	calls := func() int { return len(e.rec.applied()) }

	polls(3)
	if calls() != 0 {
		t.Fatalf("unchanged content: apply called %d times", calls())
	}
	e.write(reloadYAML("http://hooks.example/a", "")) // the same bytes again: a new mtime only
	polls(3)
	e.write("# a comment\n" + reloadYAML("http://hooks.example/a", "")) // new bytes, same configuration
	polls(3)
	if calls() != 0 {
		t.Fatalf("unchanged configuration: apply called %d times", calls())
	}

	// A file caught half-written (here: the hook list cut after its first entry, still valid
	// YAML) is read once, then the finished file: only the finished one is applied.
	full := reloadYAML("http://hooks.example/b", "")
	e.write(full[:strings.Index(full, "            - hook: web_hook")])
	w.poll()
	e.write(full)
	w.poll()
	if calls() != 0 {
		t.Fatalf("a content read once was applied; it must be read the same twice")
	}
	w.poll()
	if calls() != 1 || hookURL(t, e.rec.applied()[0]) != "http://hooks.example/b" {
		t.Fatalf("the settled content should be applied once, got %d calls", calls())
	}
	polls(3)
	if calls() != 1 {
		t.Fatalf("an applied content was applied again: %d calls", calls())
	}
}

// TestReloadWorkerRules: a worker's file needs no cookie secret, so a worker's watcher judges a
// reload by LoadFor(..., requireServe=false), as its start-up did.
func TestReloadWorkerRules(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		requireServe bool
		applied      bool
	}{
		{"worker", false, true},
		{"serve", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newReloadEnv(t, reloadYAML("http://hooks.example/a", ""))
			cfg, _, err := LoadFor([]string{e.path}, false, nil, false)
			if err != nil {
				t.Fatal(err)
			}
			e.run(func(ctx context.Context, log *slog.Logger) {
				WatchFor(ctx, []string{e.path}, false, nil, tc.requireServe, reloadTestInterval, cfg, e.rec.apply, log)
			})
			e.write(reloadYAML("http://hooks.example/b", ""))
			if tc.applied {
				e.waitApplied(1)
				return
			}
			if line := e.waitLog("level=ERROR", reloadRefused); !strings.Contains(line, "secrets.cookie") {
				t.Errorf("serve's rules need a cookie secret: %s", line)
			}
		})
	}
}

func TestReloadNothingToWatch(t *testing.T) {
	t.Parallel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// A context that never ends: without files, Watch must return on its own.
		Watch(context.Background(), nil, true, nil, 0, &Config{},
			func(*Config) error { t.Error("apply called without files"); return nil }, slog.New(slog.DiscardHandler))
	}()
	select {
	case <-done:
	case <-time.After(reloadTestTimeout):
		t.Fatal("Watch without files did not return")
	}
}

// TestReloadStopsWithItsContext is not parallel, so that goleak sees only its own goroutines.
func TestReloadStopsWithItsContext(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	path := filepath.Join(t.TempDir(), "latch.yaml")
	if err := os.WriteFile(path, []byte(reloadYAML("http://hooks.example/a", "")), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := Load([]string{path}, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Watch(ctx, []string{path}, true, nil, reloadTestInterval, cfg, func(*Config) error { return nil }, slog.New(slog.DiscardHandler))
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(reloadTestTimeout):
		t.Fatal("Watch did not return after its context ended")
	}
}

func TestReloadImmutableChange(t *testing.T) {
	t.Parallel()
	base := func(t *testing.T) *Config {
		t.Helper()
		cfg, _, err := load(t, true, nil, reloadYAML("http://hooks.example/a", ""))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		want   string
	}{
		{"nothing", func(*Config) {}, ""},
		{"a hook", func(c *Config) {
			c.Selfservice.Flows.Registration.After.Password.Hooks[1].Config = json.RawMessage(`{"id":"target","url":"http://hooks.example/b","method":"POST"}`)
		}, ""},
		{"a hook added", func(c *Config) {
			c.Selfservice.Flows.Login.After.Hooks = []Hook{{Hook: "revoke_active_sessions", Config: json.RawMessage(`{}`)}}
		}, ""},
		{"password policy", func(c *Config) { c.Selfservice.Methods.Password.Config.MinPasswordLength = 12 }, ""},
		{"signing secrets", func(c *Config) { c.Webhooks.SigningSecrets = append(c.Webhooks.SigningSecrets, "whsec_b") }, ""},
		{"dsn", func(c *Config) { c.DSN += "2" }, "dsn"},
		{"serve base_url", func(c *Config) { c.Serve.Admin.BaseURL = "https://admin.example" }, "serve.admin.base_url"},
		{"nats", func(c *Config) { c.NATS.URL = "nats://other:4222" }, "nats.url"},
		{"hasher", func(c *Config) { c.Hashers.Algorithm = "argon2" }, "hashers.algorithm"},
		{"bcrypt cost", func(c *Config) { c.Hashers.Bcrypt.Cost = 13 }, "hashers.bcrypt.cost"},
		{"log", func(c *Config) { c.Log.Format = "json" }, "log.format"},
		{"identity default", func(c *Config) { c.Identity.DefaultSchemaID = "customer" }, "identity.default_schema_id"},
		{"identity schemas", func(c *Config) {
			c.Identity.Schemas = []SchemaRef{{ID: "default", URL: "file:///etc/latch/identity.json"}}
		}, "identity.schemas"},
		{"cookie secret rotated", func(c *Config) { c.Secrets.Cookie = append([]string{"a-new-cookie-secret-0000"}, c.Secrets.Cookie...) }, "secrets.cookie"},
		{"session lifespan", func(c *Config) { c.Session.Lifespan = Duration(time.Hour) }, "session.lifespan"},
		{"worker concurrency", func(c *Config) { c.Webhooks.Worker.Concurrency = 8 }, "webhooks.worker.concurrency"},
		{"allowed networks", func(c *Config) { c.Webhooks.AllowedNetworks = []string{"10.0.0.0/8"} }, "webhooks.allowed_networks"},
		{"events", func(c *Config) { c.Events.Stream.Replicas = 3 }, "events.stream.replicas"},
		// Keys are visited in sorted order: dsn before selfservice and serve.
		{"several", func(c *Config) {
			c.Serve.Public.Port = 1
			c.DSN += "2"
			c.Selfservice.Methods.Password.Config.MinPasswordLength = 12
		}, "dsn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			old, next := base(t), base(t)
			tc.change(next)
			if got := immutableChange(old, next); got != tc.want {
				t.Errorf("immutableChange = %q, want %q", got, tc.want)
			}
		})
	}
}

// lineWith reports whether one line of out contains every one of words.
func lineWith(out string, words ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(l, w)
		}
		if ok {
			return true
		}
	}
	return false
}
