package cluster

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/tests/latchtest"
)

// account is the account JetStream keeps Latch's stream in: the global one, as no account is
// configured.
const account = server.DEFAULT_GLOBAL_ACCOUNT

// natsCluster is three JetStream servers inside the test process, clustered with routes on
// loopback. Each node keeps its ports and its store directory across stop and start, as a
// restarted machine would: clients and the other nodes find it again on their own, and it
// catches up from its own store and its peers.
type natsCluster struct {
	t     *testing.T
	nodes []*natsNode
}

// natsNode is one server of the cluster.
type natsNode struct {
	t                       *testing.T
	name                    string
	clientPort, clusterPort int
	routes                  string // every node's route URL, comma-separated (its own included)
	storeDir                string

	mu  sync.Mutex
	srv *server.Server // nil while stopped
}

// startNATSCluster starts three nodes and waits until they formed a cluster with a JetStream
// meta leader; clean-up shuts them down.
func startNATSCluster(t *testing.T) *natsCluster {
	t.Helper()
	ports := latchtest.FreePorts(t, 6)
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3+i]))
	}
	c := &natsCluster{t: t}
	for i := range 3 {
		n := &natsNode{
			t: t, name: fmt.Sprintf("n%d", i+1), clientPort: ports[i], clusterPort: ports[3+i],
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
	latchtest.WaitFor(t, 30*time.Second, "the NATS cluster to elect a JetStream meta leader", func() (bool, string) {
		leader, current := "", 0
		for _, n := range c.nodes {
			if s := n.server(); s != nil && s.JetStreamIsCurrent() {
				current++
				if s.JetStreamIsLeader() {
					leader = n.name
				}
			}
		}
		return leader != "" && current == 3, fmt.Sprintf("meta leader %q, %d of 3 nodes current", leader, current)
	})
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

// streamLeader is the node that leads LATCH_EVENTS now, or nil while there is none.
func (c *natsCluster) streamLeader() *natsNode {
	for _, n := range c.nodes {
		if s := n.server(); s != nil && s.JetStreamIsStreamLeader(account, events.StreamName) {
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
		leader = c.streamLeader()
		return leader != nil, "no node leads it"
	})
	return leader
}

// url is the node's client URL; it does not change across restarts.
func (n *natsNode) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.clientPort) }

func (n *natsNode) server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// running reports whether the node is up.
func (n *natsNode) running() bool { return n.server() != nil }

// start starts the node on its ports with its store. It returns once the node accepts clients;
// joining the cluster and catching up happen after (waitCurrent).
func (n *natsNode) start() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		n.t.Errorf("nats %s: start of a running server", n.name)
		return
	}
	ns, err := server.NewServer(&server.Options{
		ServerName:         n.name,
		Host:               "127.0.0.1",
		Port:               n.clientPort,
		JetStream:          true,
		JetStreamMaxMemory: 64 << 20,
		JetStreamMaxStore:  1 << 30,
		StoreDir:           n.storeDir,
		Cluster:            server.ClusterOpts{Name: "latch-test", Host: "127.0.0.1", Port: n.clusterPort},
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

// stop shuts the node down and waits until it is gone; a stopped node is left alone.
func (n *natsNode) stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return
	}
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.srv = nil
}

// waitCurrent waits until the node is back in the cluster: current with the JetStream meta
// group and with the replica of LATCH_EVENTS it holds.
func (n *natsNode) waitCurrent(timeout time.Duration) {
	n.t.Helper()
	latchtest.WaitFor(n.t, timeout, "nats "+n.name+" to be current", func() (bool, string) {
		s := n.server()
		if s == nil {
			return false, "stopped"
		}
		meta, stream := s.JetStreamIsCurrent(), s.JetStreamIsStreamCurrent(account, events.StreamName)
		return meta && stream, fmt.Sprintf("meta current %v, stream %s current %v", meta, events.StreamName, stream)
	})
}
