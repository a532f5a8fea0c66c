package pipeline

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// waitSucceeded waits until the crm hook has exactly one delivery per identity in ids and
// every one is succeeded, in the table. Then it checks that the admin API says the same, and
// returns the deliveries keyed by identity id. Extra deliveries (of identities the test did not
// register in this batch) are allowed only for identities listed in others.
func (e *env) waitSucceeded(ids []string, others []string, timeout time.Duration) map[string]deliveryRow {
	e.t.Helper()
	want := len(ids) + len(others)
	var last []deliveryRow
	e.waitFor(timeout, fmt.Sprintf("%d deliveries to hook %s to succeed", want, hookID), func() (bool, string) {
		last = e.deliveries()
		states := countStates(last)
		return len(last) >= want && states["succeeded"] == len(last),
			fmt.Sprintf("%d deliveries, by state %v; attempts of unfinished ones: %s; upstream: %s",
				len(last), states, e.unfinished(last), e.upstream())
	})

	// One registration, one delivery: fan-out must neither lose nor double an event.
	byIdentity := map[string]deliveryRow{}
	for _, d := range last {
		if prev, dup := byIdentity[d.IdentityID]; dup {
			e.t.Errorf("identity %s has two deliveries to %s: %s and %s", d.IdentityID, hookID, prev.ID, d.ID)
		}
		byIdentity[d.IdentityID] = d
	}
	for _, id := range append(slices.Clone(ids), others...) {
		if _, ok := byIdentity[id]; !ok {
			e.t.Errorf("identity %s (registered) has no delivery to %s", id, hookID)
		}
	}
	if len(byIdentity) != want {
		e.t.Errorf("want %d deliveries to %s (one per registration), got %d: %v", want, hookID, len(byIdentity), slices.Sorted(maps.Keys(byIdentity)))
	}

	// The operator's view: GET /admin/webhooks/deliveries lists them all as succeeded.
	list, err := e.api.listDeliveries(e.t.Context())
	if err != nil {
		e.t.Fatalf("admin API: %v", err)
	}
	listed := map[string]adminDelivery{}
	for _, d := range list {
		listed[d.ID] = d
	}
	for _, d := range last {
		switch ad, ok := listed[d.ID]; {
		case !ok:
			e.t.Errorf("admin API: delivery %s (identity %s) is not listed", d.ID, d.IdentityID)
		case ad.State != "succeeded" || ad.HookID != hookID:
			e.t.Errorf("admin API: delivery %s: want hook_id %s, state succeeded; got %+v", d.ID, hookID, ad)
		}
	}
	if len(list) != len(last) {
		e.t.Errorf("admin API: want %d deliveries listed for hook %s, got %d", len(last), hookID, len(list))
	}
	return byIdentity
}

// unfinished describes the deliveries that are not succeeded yet with their attempts, for
// failure messages.
func (e *env) unfinished(ds []deliveryRow) string {
	attempts := e.attempts()
	var b strings.Builder
	n := 0
	for _, d := range ds {
		if d.State == "succeeded" {
			continue
		}
		if n++; n > 10 {
			b.WriteString(" ...")
			break
		}
		fmt.Fprintf(&b, "\n  %s %s attempts=%d %v", d.ID, d.State, d.Attempts, attempts[d.ID])
	}
	if n == 0 {
		return "none"
	}
	return b.String()
}

// duplicates counts the delivery ids the receiver answered more than once, and describes them.
func duplicates(reqs []request) (int, string) {
	var lines []string
	for id, rs := range byID(reqs) {
		answered := 0
		for _, r := range rs {
			if r.Answered {
				answered++
			}
		}
		if answered > 1 {
			lines = append(lines, fmt.Sprintf("%s answered %d times (%d requests)", id, answered, len(rs)))
		}
	}
	sort.Strings(lines)
	return len(lines), strings.Join(lines, "\n")
}

// upstream describes where events are before they become deliveries, for failure messages:
// the outbox (unpublished rows) and the webhook consumer (messages not yet delivered to a
// worker, delivered but not acknowledged, redelivered).
func (e *env) upstream() string {
	ctx, cancel := context.WithTimeout(e.t.Context(), 2*time.Second)
	defer cancel()
	var total, unpublished int
	if err := e.db.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE published_at IS NULL)
FROM event_outbox WHERE type = 'identity.created'`).Scan(&total, &unpublished); err != nil {
		return fmt.Sprintf("event_outbox: %v", err)
	}
	s := fmt.Sprintf("identity.created in event_outbox: %d, unpublished %d", total, unpublished)
	nc, err := nats.Connect(e.nats.url(), nats.Timeout(time.Second))
	if err != nil {
		return s + fmt.Sprintf("; nats: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return s + fmt.Sprintf("; jetstream: %v", err)
	}
	cons, err := js.Consumer(ctx, "LATCH_EVENTS", "latch-webhooks")
	if err != nil {
		return s + fmt.Sprintf("; consumer latch-webhooks: %v", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return s + fmt.Sprintf("; consumer latch-webhooks: %v", err)
	}
	return s + fmt.Sprintf("; consumer latch-webhooks: not yet delivered %d, awaiting ack %d, redelivered %d, waiting pulls %d",
		info.NumPending, info.NumAckPending, info.NumRedelivered, info.NumWaiting)
}
