package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// natsCluster is a three-node JetStream cluster inside the chaos process, reachable by the
// `latch` processes over loopback TCP. A node restarts as a real one would: Shutdown, then a
// new server on the same client and route ports with the same store, so the stream's replica
// on it catches up from the others.
type natsCluster struct {
	dir         string
	clientPorts []int
	routePorts  []int

	mu    sync.Mutex
	nodes []*server.Server // nil while a node is down
}

// startNATSCluster starts len(clientPorts) nodes and waits until every one reports JetStream
// healthy (a meta leader elected and known to all).
func startNATSCluster(dir string, clientPorts, routePorts []int) (*natsCluster, error) {
	c := &natsCluster{dir: dir, clientPorts: clientPorts, routePorts: routePorts, nodes: make([]*server.Server, len(clientPorts))}
	for i := range clientPorts {
		if err := c.startNode(i); err != nil {
			c.shutdown()
			return nil, err
		}
	}
	for i := range clientPorts {
		if err := c.waitHealthy(i, 60*time.Second); err != nil {
			c.shutdown()
			return nil, err
		}
	}
	return c, nil
}

// url lists every node, as nats.Connect takes it: a client fails over between them.
func (c *natsCluster) url() string {
	urls := make([]string, len(c.clientPorts))
	for i, p := range c.clientPorts {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", p)
	}
	return strings.Join(urls, ",")
}

func (c *natsCluster) startNode(i int) error {
	routes := make([]string, 0, len(c.routePorts))
	for j, p := range c.routePorts {
		if j != i {
			routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
		}
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: fmt.Sprintf("chaos-n%d", i),
		Host:       "127.0.0.1",
		Port:       c.clientPorts[i],
		JetStream:  true,
		StoreDir:   filepath.Join(c.dir, fmt.Sprintf("n%d", i)),
		Cluster:    server.ClusterOpts{Name: "chaos", Host: "127.0.0.1", Port: c.routePorts[i]},
		Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return fmt.Errorf("nats node %d: %w", i, err)
	}
	ns.Start()
	if !ns.ReadyForConnections(20 * time.Second) {
		ns.Shutdown()
		return fmt.Errorf("nats node %d: not ready for connections on port %d after 20s", i, c.clientPorts[i])
	}
	c.mu.Lock()
	c.nodes[i] = ns
	c.mu.Unlock()
	return nil
}

// waitHealthy waits until node i's health check passes: JetStream enabled and current with the
// meta leader, its stream and consumer replicas caught up.
func (c *natsCluster) waitHealthy(i int, timeout time.Duration) error {
	c.mu.Lock()
	ns := c.nodes[i]
	c.mu.Unlock()
	if ns == nil {
		return fmt.Errorf("nats node %d is down", i)
	}
	deadline := time.Now().Add(timeout)
	for {
		st := ns.Healthz(nil)
		if st.StatusCode == 0 || st.StatusCode == 200 {
			if st.Status == "ok" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats node %d not healthy after %s: %s %s", i, timeout, st.Status, st.Error)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stopNode shuts node i down and waits until it is gone.
func (c *natsCluster) stopNode(i int) error {
	c.mu.Lock()
	ns := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if ns == nil {
		return errors.New("already down")
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	return nil
}

// restartNode is the fault: node i down for `down`, then back and healthy again.
func (c *natsCluster) restartNode(i int, down time.Duration) error {
	if err := c.stopNode(i); err != nil {
		return err
	}
	time.Sleep(down)
	if err := c.startNode(i); err != nil {
		return err
	}
	return c.waitHealthy(i, 60*time.Second)
}

func (c *natsCluster) shutdown() {
	for i := range c.nodes {
		_ = c.stopNode(i)
	}
}
