package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// maxInFlight bounds the registrations waiting for an answer; a tick beyond it is counted as
// skipped instead of piling goroutines onto a stalled server.
const maxInFlight = 64

// load runs native password registrations at a steady rate, round-robin over the serves'
// public URLs. A failed request is recorded by cause, never fatal: during a Postgres restart
// 503s are expected, and a killed serve drops its connections.
type load struct {
	urls     []string
	rate     float64
	password string
	hc       *http.Client

	mu       sync.Mutex
	sent     int
	ok       int
	failed   map[string]int
	okIDs    map[string]time.Time // identity ids named by 200 answers -> when
	inFlight int
}

func newLoad(urls []string, rate float64) *load {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = maxInFlight
	return &load{
		urls: urls, rate: rate, failed: map[string]int{}, okIDs: map[string]time.Time{},
		// Not similar to any identifier, long enough for the policy; the same for everyone.
		password: "chaos-Tr0ub4dor-pepper-9f1c",
		hc:       &http.Client{Timeout: 15 * time.Second, Transport: tr},
	}
}

// run sends registrations until ctx ends, then waits for the ones in flight.
func (l *load) run(ctx context.Context, runID string) {
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(time.Duration(float64(time.Second) / l.rate))
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		l.mu.Lock()
		l.sent++
		busy := l.inFlight >= maxInFlight
		if busy {
			l.failed[fmt.Sprintf("skipped: %d in flight", maxInFlight)]++
		} else {
			l.inFlight++
		}
		l.mu.Unlock()
		if busy {
			continue
		}
		u := l.urls[seq%len(l.urls)]
		email := fmt.Sprintf("chaos-%s-%06d@example.org", runID, seq)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The request outlives the load's end by its own timeout, so that the answer of a
			// committed registration is not thrown away.
			id, err := l.register(context.WithoutCancel(ctx), u, email)
			l.mu.Lock()
			defer l.mu.Unlock()
			l.inFlight--
			if err != nil {
				l.failed[classify(err)]++
				return
			}
			l.ok++
			l.okIDs[id] = time.Now()
		}()
	}
}

// httpError is an answer with an unexpected status.
type httpError struct {
	step   string
	status int
	body   string
}

func (e *httpError) Error() string {
	return fmt.Sprintf("%s: HTTP %d: %s", e.step, e.status, e.body)
}

// register signs one identity up: GET the API flow, POST the password method.
func (l *load) register(ctx context.Context, base, email string) (string, error) {
	var flow struct {
		ID string `json:"id"`
	}
	if err := l.do(ctx, "create flow", http.MethodGet, base+"/self-service/registration/api", nil, &flow); err != nil {
		return "", err
	}
	var res struct {
		SessionToken string `json:"session_token"`
		Identity     struct {
			ID string `json:"id"`
		} `json:"identity"`
	}
	in := map[string]any{"method": "password", "password": l.password, "traits": map[string]any{"email": email}}
	if err := l.do(ctx, "submit", http.MethodPost, base+"/self-service/registration?flow="+url.QueryEscape(flow.ID), in, &res); err != nil {
		return "", err
	}
	if res.Identity.ID == "" || res.SessionToken == "" {
		return "", errors.New("submit: 200 without identity id or session token")
	}
	return res.Identity.ID, nil
}

func (l *load) do(ctx context.Context, step, method, u string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := l.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", step, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return &httpError{step: step, status: resp.StatusCode, body: string(bytes.TrimSpace(b[:min(len(b), 300)]))}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s: decode: %w", step, err)
	}
	return nil
}

// classify names a failure's cause for the counts: the step and status, or the kind of
// transport error.
func classify(err error) string {
	var he *httpError
	if errors.As(err, &he) {
		return fmt.Sprintf("%s: HTTP %d", he.step, he.status)
	}
	step, _, _ := strings.Cut(err.Error(), ":")
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return step + ": connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return step + ": connection reset"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return step + ": timeout"
	}
	return step + ": " + err.Error()
}

// requestReport counts the registrations by outcome.
type requestReport struct {
	Sent   int            `json:"sent"`
	OK     int            `json:"ok"`
	Failed map[string]int `json:"failed"`
}

func (l *load) report() (requestReport, map[string]time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := make(map[string]int, len(l.failed))
	for k, v := range l.failed {
		f[k] = v
	}
	return requestReport{Sent: l.sent, OK: l.ok, Failed: f}, maps.Clone(l.okIDs)
}
