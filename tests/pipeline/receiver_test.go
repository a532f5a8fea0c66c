package pipeline

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// request is one webhook request as the receiver saw it.
type request struct {
	Seq        int         // arrival order, from 0
	ID         string      // webhook-id: the delivery id
	Header     http.Header // as received
	Body       []byte
	RemotePort int // the sender's local port: which worker sent it (see tcpPortOwners)
	Start, End time.Time
	// Answered: the receiver wrote its 204. Abandoned: the sender went away (its connection
	// closed) before the answer. While neither is set the request is in flight.
	Answered, Abandoned bool
}

func (r request) inFlight() bool { return !r.Answered && !r.Abandoned }

// inFlightAt reports whether the request had arrived and was not finished at time at.
func (r request) inFlightAt(at time.Time) bool {
	return !r.Start.After(at) && (r.inFlight() || r.End.After(at))
}

// identityID is data.identity.id of the event envelope in the body ("" when absent).
func (r request) identityID() string {
	var env struct {
		Data struct {
			Identity struct {
				ID string `json:"id"`
			} `json:"identity"`
		} `json:"data"`
	}
	_ = json.Unmarshal(r.Body, &env)
	return env.Data.Identity.ID
}

// receiver is the webhook endpoint: an httptest server that records every request and answers
// 204, after a delay while one is set (so deliveries stay in flight).
type receiver struct {
	srv *httptest.Server

	mu      sync.Mutex
	reqs    []*request
	delay   time.Duration
	release chan struct{} // closed when the current delay is lifted
	closing chan struct{} // closed at clean-up: answer everything now
}

// newReceiver starts a receiver; clean-up releases every held request and closes it.
func newReceiver(t *testing.T) *receiver {
	rc := &receiver{release: make(chan struct{}), closing: make(chan struct{})}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serveHTTP))
	t.Cleanup(func() {
		close(rc.closing)
		rc.srv.Close()
	})
	return rc
}

// url is where the web_hook points.
func (rc *receiver) url() string { return rc.srv.URL + "/hook" }

func (rc *receiver) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	_, port, _ := net.SplitHostPort(r.RemoteAddr)
	req := &request{ID: r.Header.Get("webhook-id"), Header: r.Header.Clone(), Body: body, Start: time.Now()}
	req.RemotePort, _ = strconv.Atoi(port)

	rc.mu.Lock()
	req.Seq = len(rc.reqs)
	rc.reqs = append(rc.reqs, req)
	delay, release := rc.delay, rc.release
	rc.mu.Unlock()

	if delay > 0 {
		timer := time.NewTimer(delay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-release:
		case <-rc.closing:
		case <-r.Context().Done():
		}
	}
	// A sender that died (kill -9) or gave up (its timeout, its shutdown) closed the connection,
	// which cancels the request's context: nobody is there to read an answer.
	rc.mu.Lock()
	defer rc.mu.Unlock()
	req.End = time.Now()
	if r.Context().Err() != nil {
		req.Abandoned = true
		return
	}
	w.WriteHeader(http.StatusNoContent)
	req.Answered = true
}

// setDelay makes later requests wait d before the answer; 0 also answers the held ones now.
func (rc *receiver) setDelay(d time.Duration) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.delay = d
	if d == 0 {
		close(rc.release)
		rc.release = make(chan struct{})
	}
}

// requests returns a copy of every request so far, in arrival order.
func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make([]request, len(rc.reqs))
	for i, r := range rc.reqs {
		out[i] = *r
	}
	return out
}

// inFlight counts the requests waiting for their answer.
func (rc *receiver) inFlight() int {
	n := 0
	for _, r := range rc.requests() {
		if r.inFlight() {
			n++
		}
	}
	return n
}

// byID groups requests by webhook-id.
func byID(reqs []request) map[string][]request {
	m := map[string][]request{}
	for _, r := range reqs {
		m[r.ID] = append(m[r.ID], r)
	}
	return m
}
