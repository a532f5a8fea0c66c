// Package natstest gives tests a real NATS server with JetStream: an embedded one per test, with
// its own store, or the external server named by TEST_NATS_URL. It owns only test set-up and must
// not be imported by non-test code.
package natstest

import (
	"net"
	"os"
	"sync"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/latchhq/latch/events"
)

// started remembers how each server was configured, so that Restart can bring it back on the
// same port with the same store.
var (
	mu      sync.Mutex
	started = map[*server.Server]events.EmbeddedConfig{}
)

// Start returns a JetStream server for t and its client URL. Without TEST_NATS_URL it is an
// embedded server on a random loopback port with a t.TempDir() store, shut down when t ends. With
// TEST_NATS_URL set it returns nil and that URL: tests then share the external server, so they
// must use their own ids or subjects and not assume an empty stream.
func Start(t testing.TB) (*server.Server, string) {
	t.Helper()
	if url := os.Getenv("TEST_NATS_URL"); url != "" {
		return nil, url
	}
	return start(t, events.EmbeddedConfig{StoreDir: t.TempDir(), Host: "127.0.0.1", Port: server.RANDOM_PORT})
}

// StartEmbedded always starts an embedded server, whatever TEST_NATS_URL says: for tests that
// stop or restart NATS themselves (an outage cannot be simulated on a shared external server).
func StartEmbedded(t testing.TB) (*server.Server, string) {
	t.Helper()
	return start(t, events.EmbeddedConfig{StoreDir: t.TempDir(), Host: "127.0.0.1", Port: server.RANDOM_PORT})
}

// Restart shuts ns down and starts a new server on the same port and store directory, so that
// clients reconnect to it and find their streams: the "NATS down, then back" case. ns must come
// from Start (not nil: an external server cannot be restarted from a test).
func Restart(t testing.TB, ns *server.Server) *server.Server {
	t.Helper()
	if ns == nil {
		t.Fatal("natstest: Restart needs the embedded server (TEST_NATS_URL is set)")
	}
	mu.Lock()
	cfg, ok := started[ns]
	delete(started, ns)
	mu.Unlock()
	if !ok {
		t.Fatal("natstest: Restart of a server Start did not return")
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	restarted, _ := start(t, cfg)
	return restarted
}

// start runs an embedded server from cfg and registers its shutdown.
func start(t testing.TB, cfg events.EmbeddedConfig) (*server.Server, string) {
	t.Helper()
	ns, err := events.StartEmbedded(cfg, nil)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	cfg.Port = ns.Addr().(*net.TCPAddr).Port
	mu.Lock()
	started[ns] = cfg
	mu.Unlock()
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
		mu.Lock()
		delete(started, ns)
		mu.Unlock()
	})
	return ns, ns.ClientURL()
}
