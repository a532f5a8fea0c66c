package pipeline

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// natsServer is a JetStream server running inside the test process, reachable over loopback
// TCP by the `latch` processes. stop and restart simulate an outage: the same port (so clients
// reconnect on their own) and the same store (so the stream, the durable consumer and every
// stored message survive, as they would on a real server).
type natsServer struct {
	t        *testing.T
	name     string
	storeDir string

	mu   sync.Mutex
	srv  *server.Server // nil while stopped
	port int
}

// startNATS starts a fresh server with its own store on a random port; clean-up shuts it down.
func startNATS(t *testing.T) *natsServer {
	t.Helper()
	n := &natsServer{
		t:        t,
		name:     "pipeline-" + strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()),
		storeDir: t.TempDir(),
		port:     server.RANDOM_PORT,
	}
	n.start()
	t.Cleanup(n.stop)
	return n
}

// url is the client URL; it does not change across restarts.
func (n *natsServer) url() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return fmt.Sprintf("nats://127.0.0.1:%d", n.port)
}

func (n *natsServer) start() {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		n.t.Fatal("nats: start of a running server")
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: n.name,
		Host:       "127.0.0.1",
		Port:       n.port,
		JetStream:  true,
		StoreDir:   n.storeDir,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		n.t.Fatalf("nats: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		n.t.Fatalf("nats: not ready for connections on port %d after 10s", n.port)
	}
	if !ns.JetStreamEnabled() {
		ns.Shutdown()
		n.t.Fatal("nats: JetStream did not start")
	}
	n.port = ns.Addr().(*net.TCPAddr).Port
	n.srv = ns
}

// stop shuts the server down and waits until it is gone; a stopped server is left alone.
func (n *natsServer) stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return
	}
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.srv = nil
}

// restart brings a stopped server back on the same port with the same store.
func (n *natsServer) restart() { n.start() }
