package latchtest

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// WaitFor polls cond every 50 ms until it holds, failing t after timeout with what cond last
// said (status). Tests wait on conditions, never on sleeps.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (ok bool, status string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, status := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s; last: %s", timeout, what, status)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("waiting for %s: %v", what, t.Context().Err())
		case <-tick.C:
		}
	}
}

// FreePorts returns n distinct loopback ports that were free a moment ago, failing t when it
// cannot.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := PickFreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// PickFreePorts is FreePorts for TestMain. All listeners are held until every port is chosen, so
// the kernel cannot hand out the same port twice.
func PickFreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
