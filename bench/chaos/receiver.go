package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// receiver is one webhook endpoint in the chaos process: it verifies each request's Standard
// Webhooks signature, answers 204, and records what arrived. While flapping it answers 503
// without looking at the request, as an overloaded or deploying receiver does.
type receiver struct {
	name string
	wh   *standardwebhooks.Webhook
	srv  *http.Server
	url  string

	mu        sync.Mutex
	flapUntil time.Time
	ids       map[string]int                 // webhook-id -> 2xx answers
	events    map[string]map[string]struct{} // identity id of identity.created -> webhook-ids
	first     map[string]time.Time           // identity id -> its identity.created's first 2xx
	okTimes   []time.Time                    // every 2xx answer, in order
	flapped   int                            // 503s answered while flapping
	badSig    int
	badBody   int
	otherType int
}

// startReceiver listens on a free loopback port; secret is the whsec_ secret Latch signs with.
func startReceiver(name, secret string) (*receiver, error) {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rc := &receiver{name: name, wh: wh, url: "http://" + ln.Addr().String() + "/" + name,
		ids: map[string]int{}, events: map[string]map[string]struct{}{}, first: map[string]time.Time{}}
	rc.srv = &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = rc.srv.Serve(ln) }()
	return rc, nil
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	now := time.Now()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if now.Before(rc.flapUntil) {
		rc.flapped++
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if err != nil {
		rc.badBody++
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if err := rc.wh.Verify(body, r.Header); err != nil {
		rc.badSig++
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var env struct {
		Type string `json:"type"`
		Data struct {
			Identity struct {
				ID string `json:"id"`
			} `json:"identity"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		rc.badBody++
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	id := r.Header.Get("webhook-id")
	rc.ids[id]++
	rc.okTimes = append(rc.okTimes, now)
	if env.Type != "identity.created" || env.Data.Identity.ID == "" {
		rc.otherType++
	} else {
		set := rc.events[env.Data.Identity.ID]
		if set == nil {
			set = map[string]struct{}{}
			rc.events[env.Data.Identity.ID] = set
			rc.first[env.Data.Identity.ID] = now
		}
		set[id] = struct{}{}
	}
	w.WriteHeader(http.StatusNoContent)
}

// flap makes the receiver answer 503 for d from now.
func (rc *receiver) flap(d time.Duration) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.flapUntil = time.Now().Add(d)
}

// stopFlapping ends a flap now, for the drain at the end.
func (rc *receiver) stopFlapping() { rc.flap(0) }

// missing returns the identities in want whose identity.created has not arrived.
func (rc *receiver) missing(want []string) []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, id := range want {
		if len(rc.events[id]) == 0 {
			out = append(out, id)
		}
	}
	return out
}

func (rc *receiver) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rc.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// receiverReport is what one receiver saw, checked against the identities in Postgres.
type receiverReport struct {
	Name string `json:"name"`
	// Expected is the number of identities in Postgres; Delivered those whose identity.created
	// arrived at least once; Missing the others (the first few ids in MissingIDs, each with
	// what Postgres says about its delivery).
	Expected   int      `json:"expected"`
	Delivered  int      `json:"delivered"`
	Missing    int      `json:"missing"`
	MissingIDs []string `json:"missing_ids,omitempty"`
	// Received counts 2xx answers; Flapped the 503s answered on purpose.
	Received int `json:"received"`
	Flapped  int `json:"flapped"`
	// DuplicateIDs: webhook-ids answered 2xx more than once; DuplicateCopies the extra copies;
	// MaxCopies the most copies of one webhook-id. At-least-once allows them; they are shown.
	DuplicateIDs    int `json:"duplicate_ids"`
	DuplicateCopies int `json:"duplicate_copies"`
	MaxCopies       int `json:"max_copies"`
	// EventsUnderTwoIDs: identities whose identity.created came under more than one webhook-id,
	// which a receiver de-duplicating on webhook-id cannot catch: a Latch bug.
	EventsUnderTwoIDs int `json:"events_under_two_ids"`
	BadSignatures     int `json:"bad_signatures"`
	BadBodies         int `json:"bad_bodies"`
	OtherEvents       int `json:"other_events"`
	// LongestStallMS is the longest time without a 2xx delivery while the load ran (from the
	// start of the load to the first delivery, between two, from the last to the end of the
	// load); StallStartS says when it began, in seconds since the load started.
	LongestStallMS int64   `json:"longest_stall_ms"`
	StallStartS    float64 `json:"stall_start_s"`
	// Delay is from the 200 answer of a registration to the first 2xx delivery of its
	// identity.created, over the registrations answered 200: percentiles and the worst, with
	// when that registration was answered (seconds since the load started).
	DelayP50MS  int64   `json:"delay_p50_ms"`
	DelayP99MS  int64   `json:"delay_p99_ms"`
	DelayMaxMS  int64   `json:"delay_max_ms"`
	DelayMaxAtS float64 `json:"delay_max_at_s"`
}

// report checks what arrived against want, the identities in Postgres; the stall is measured
// over the load window [from, to].
func (rc *receiver) report(want []string, answered map[string]time.Time, from, to time.Time) receiverReport {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	r := receiverReport{Name: rc.name, Expected: len(want), Flapped: rc.flapped, BadSignatures: rc.badSig,
		BadBodies: rc.badBody, OtherEvents: rc.otherType}
	for _, id := range want {
		if n := len(rc.events[id]); n > 0 {
			r.Delivered++
			if n > 1 {
				r.EventsUnderTwoIDs++
			}
		} else {
			r.Missing++
		}
	}
	for _, n := range rc.ids {
		r.Received += n
		if n > 1 {
			r.DuplicateIDs++
			r.DuplicateCopies += n - 1
		}
		r.MaxCopies = max(r.MaxCopies, n)
	}
	prev := from
	check := func(t time.Time) {
		if d := t.Sub(prev); d.Milliseconds() > r.LongestStallMS {
			r.LongestStallMS = d.Milliseconds()
			r.StallStartS = prev.Sub(from).Seconds()
		}
		prev = t
	}
	for _, t := range rc.okTimes {
		if t.Before(from) {
			continue
		}
		if t.After(to) {
			break
		}
		check(t)
	}
	check(to)
	var delays []time.Duration
	for id, at := range answered {
		got, ok := rc.first[id]
		if !ok {
			continue
		}
		d := got.Sub(at)
		delays = append(delays, d)
		if d.Milliseconds() > r.DelayMaxMS {
			r.DelayMaxMS, r.DelayMaxAtS = d.Milliseconds(), at.Sub(from).Seconds()
		}
	}
	if len(delays) > 0 {
		slices.Sort(delays)
		r.DelayP50MS = delays[len(delays)/2].Milliseconds()
		r.DelayP99MS = delays[min(len(delays)-1, len(delays)*99/100)].Milliseconds()
	}
	return r
}
