package reload

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/latchhq/latch/tests/latchtest"
)

const (
	readyTimeout  = 60 * time.Second // latch serve: migrations, then /health/ready
	workerTimeout = 30 * time.Second // latch worker: until it logs that it runs
	stopTimeout   = 20 * time.Second // clean-up: SIGTERM, then SIGKILL after this
)

// --- configuration ---------------------------------------------------------------------------

// configValues fill testdata/latch.yaml.tmpl, the file every process of the test reads. With
// nats.url set, `latch serve --dev` runs no worker of its own: delivery is left to the
// `latch worker`s.
type configValues struct {
	DSN                   string
	PublicPort, AdminPort int
	NATSURL               string
	HookURL               string // the web_hook's config.url, quoted as is
}

// writeConfig replaces the file at path atomically (a new file renamed over it), as `mv`,
// editors' safe writes and configuration management tools do.
func writeConfig(t *testing.T, path string, v configValues) {
	t.Helper()
	if err := latchtest.WriteConfig(path, filepath.Join("testdata", "latch.yaml.tmpl"), v); err != nil {
		t.Fatal(err)
	}
}

// startProc starts `latch args...` in a working directory of its own; clean-up stops it.
func startProc(t *testing.T, name string, args ...string) *latchtest.Process {
	t.Helper()
	return latchtest.Start(t, latchtest.Cmd{
		Name: name, Bin: latchBin, Args: args, Dir: filepath.Join(t.TempDir(), name), StopTimeout: stopTimeout,
	})
}

// --- webhook receiver ------------------------------------------------------------------------

// receiver is the webhook endpoint: it records, for every identity, the path its first
// delivery arrived on (/a or /b), and answers 204.
type receiver struct {
	srv *httptest.Server

	mu     sync.Mutex
	paths  map[string]string // identity id -> path of its first delivery
	counts map[string]int    // path -> requests
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{paths: map[string]string{}, counts: map[string]int{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serveHTTP))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var env struct {
		Data struct {
			Identity struct {
				ID string `json:"id"`
			} `json:"identity"`
		} `json:"data"`
	}
	_ = json.Unmarshal(body, &env)
	rc.mu.Lock()
	rc.counts[r.URL.Path]++
	if id := env.Data.Identity.ID; id != "" {
		if _, ok := rc.paths[id]; !ok {
			rc.paths[id] = r.URL.Path
		}
	}
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// pathOf returns the path identity id's first delivery arrived on, if it arrived.
func (rc *receiver) pathOf(id string) (string, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	p, ok := rc.paths[id]
	return p, ok
}

func (rc *receiver) summary() string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return fmt.Sprintf("requests by path: %v; identities delivered: %d", rc.counts, len(rc.paths))
}
