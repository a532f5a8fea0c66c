package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/tests/latchtest"
	"github.com/latchhq/latch/webhooks"
)

// clusterName is the NATS cluster's name (cluster.name).
const clusterName = "latch-test"

// natsCluster is three clustered JetStream servers on loopback. Each node keeps its ports and
// its store directory across stop and start, as a restarted machine would: clients and the
// other nodes find it again on their own, and it catches up from its own store and its peers.
//
// A node runs either inside the test process (nats-server's Go API: stop is Server.Shutdown,
// which first hands the leadership of its Raft groups to a peer, as a node stopped by an
// operator does) or as a nats-server child process (natsBin), which the test can SIGKILL: no
// hand-over, the peers notice the loss only when heartbeats stop, as when a machine dies.
type natsCluster struct {
	t     *testing.T
	nodes []*natsNode
}

// natsNode is one server of the cluster.
type natsNode struct {
	t    *testing.T
	name string
	// bin is the nats-server binary to run it as a child process; "" runs it in the test process.
	bin                                  string
	clientPort, clusterPort, monitorPort int
	routes                               string // every node's route URL, comma-separated (its own included)
	storeDir                             string

	mu   sync.Mutex
	srv  *server.Server     // in-process node; nil while stopped
	proc *latchtest.Process // child-process node; nil while stopped
}

// startNATSCluster starts three nodes (child processes of bin, or in the test process when bin
// is "") and waits until every one reports healthy (/healthz: a JetStream meta leader elected,
// and the node current with it); clean-up shuts them down.
func startNATSCluster(t *testing.T, bin string) *natsCluster {
	t.Helper()
	ports := latchtest.FreePorts(t, 9)
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3+i]))
	}
	c := &natsCluster{t: t}
	for i := range 3 {
		n := &natsNode{
			t: t, name: fmt.Sprintf("n%d", i+1), bin: bin,
			clientPort: ports[i], clusterPort: ports[3+i], monitorPort: ports[6+i],
			routes: strings.Join(routes, ","), storeDir: t.TempDir(),
		}
		c.nodes = append(c.nodes, n)
		t.Cleanup(n.stop)
	}
	// Started together: a clustered JetStream server waits for its peers before it elects.
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Go(n.start)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, n := range c.nodes {
		n.waitHealthy(60 * time.Second)
	}
	return c
}

// urls is every node's client URL, comma-separated: nats.url.
func (c *natsCluster) urls() string {
	var us []string
	for _, n := range c.nodes {
		us = append(us, n.url())
	}
	return strings.Join(us, ",")
}

// streamLeader asks the cluster (StreamInfo's Cluster.Leader) which node leads LATCH_EVENTS,
// and returns it; nil while there is none or no node answers.
func (c *natsCluster) streamLeader() (*natsNode, error) {
	stream, _, err := c.leaders()
	return stream, err
}

// leaders asks the cluster which nodes lead LATCH_EVENTS and the workers' durable consumer
// (latch-webhooks); a nil node while there is none or no node answers.
func (c *natsCluster) leaders() (stream, consumer *natsNode, err error) {
	var urls []string
	for _, n := range c.nodes {
		if n.running() {
			urls = append(urls, n.url())
		}
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.Timeout(time.Second), nats.NoReconnect())
	if err != nil {
		return nil, nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(c.t.Context(), 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, nil, err
	}
	if stream = c.node(s.CachedInfo().Cluster); stream == nil {
		return nil, nil, fmt.Errorf("stream %s has no leader", events.StreamName)
	}
	if cons, err := s.Consumer(ctx, webhooks.DefaultConsumer); err == nil {
		consumer = c.node(cons.CachedInfo().Cluster)
	}
	return stream, consumer, nil
}

// node is the running node that leads according to ci; nil when none does.
func (c *natsCluster) node(ci *jetstream.ClusterInfo) *natsNode {
	if ci == nil {
		return nil
	}
	for _, n := range c.nodes {
		if n.name == ci.Leader && n.running() {
			return n
		}
	}
	return nil
}

// waitStreamLeader waits until LATCH_EVENTS has a leader and returns it.
func (c *natsCluster) waitStreamLeader(timeout time.Duration) *natsNode {
	c.t.Helper()
	var leader *natsNode
	latchtest.WaitFor(c.t, timeout, "a leader of stream "+events.StreamName, func() (bool, string) {
		var err error
		leader, err = c.streamLeader()
		return leader != nil, fmt.Sprint(err)
	})
	return leader
}

// url is the node's client URL; it does not change across restarts.
func (n *natsNode) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.clientPort) }

// running reports whether the node is up (started and not stopped or killed).
func (n *natsNode) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv != nil || n.proc != nil
}

// start starts the node on its ports with its store. It returns once the node accepts clients;
// joining the cluster and catching up happen after (waitHealthy).
func (n *natsNode) start() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil || n.proc != nil {
		n.t.Errorf("nats %s: start of a running server", n.name)
		return
	}
	if n.bin != "" {
		n.startProcess()
		return
	}
	ns, err := server.NewServer(&server.Options{
		ServerName:         n.name,
		Host:               "127.0.0.1",
		Port:               n.clientPort,
		HTTPHost:           "127.0.0.1",
		HTTPPort:           n.monitorPort,
		JetStream:          true,
		JetStreamMaxMemory: 64 << 20,
		JetStreamMaxStore:  1 << 30,
		StoreDir:           n.storeDir,
		Cluster:            server.ClusterOpts{Name: clusterName, Host: "127.0.0.1", Port: n.clusterPort},
		Routes:             server.RoutesFromStr(n.routes),
		NoSigs:             true,
		NoLog:              true,
	})
	if err != nil {
		n.t.Errorf("nats %s: %v", n.name, err)
		return
	}
	ns.Start()
	if !ns.ReadyForConnections(20 * time.Second) {
		ns.Shutdown()
		n.t.Errorf("nats %s: not ready for connections on port %d after 20s", n.name, n.clientPort)
		return
	}
	n.srv = ns
}

// startProcess runs the node as `nats-server`; called with n.mu held.
func (n *natsNode) startProcess() {
	p, err := latchtest.StartProcess(latchtest.Cmd{
		Name: "nats-server " + n.name, Bin: n.bin, Dir: filepath.Join(n.storeDir, "cwd"),
		StopTimeout: 20 * time.Second,
		Args: []string{
			"--name", n.name, "--addr", "127.0.0.1", "--port", strconv.Itoa(n.clientPort),
			"--http_port", strconv.Itoa(n.monitorPort),
			"--jetstream", "--store_dir", n.storeDir,
			"--cluster_name", clusterName, "--cluster", fmt.Sprintf("nats://127.0.0.1:%d", n.clusterPort),
			"--routes", n.routes,
		},
	})
	if err != nil {
		n.t.Errorf("nats %s: %v", n.name, err)
		return
	}
	n.proc = p
}

// stop shuts the node down cleanly (Shutdown, or SIGTERM to a child process) and waits until it
// is gone; a stopped node is left alone.
func (n *natsNode) stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.srv != nil:
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	case n.proc != nil:
		if err := n.proc.Stop(); err != nil {
			n.t.Errorf("nats %s: %v\n%s", n.name, err, n.proc.Dump())
		}
		n.proc = nil
	}
}

// kill ends a child-process node with SIGKILL: no goodbye to its peers or clients.
func (n *natsNode) kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		n.t.Fatalf("nats %s: kill of a node that is not a running child process", n.name)
	}
	n.proc.Kill()
	n.proc = nil
}

// crashed returns an error when a child-process node exited on its own.
func (n *natsNode) crashed() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return nil
	}
	if err := n.proc.Crashed(); err != nil {
		return fmt.Errorf("%w\n%s", err, n.proc.Dump())
	}
	return nil
}

// waitHealthy waits until the node's /healthz answers 200: JetStream is enabled, the node is
// current with the meta leader and with every stream and consumer replica it holds.
func (n *natsNode) waitHealthy(timeout time.Duration) {
	n.t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	u := fmt.Sprintf("http://127.0.0.1:%d/healthz", n.monitorPort)
	latchtest.WaitFor(n.t, timeout, "nats "+n.name+" to be healthy (current)", func() (bool, string) {
		if err := n.crashed(); err != nil {
			n.t.Fatal(err)
		}
		resp, err := hc.Get(u)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return resp.StatusCode == http.StatusOK, resp.Status + " " + latchtest.Clip(b)
	})
}
