package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// result is what a run found; OK is false on any lost event, half registration, registration
// answered but not stored, bad signature, event under two webhook-ids or crashed process.
type result struct {
	Seed      int64   `json:"seed"`
	DurationS float64 `json:"duration_s"`
	Serves    int     `json:"serves"`
	Workers   int     `json:"workers"`
	NATSNodes int     `json:"nats_nodes"`
	Rate      float64 `json:"rate"`

	Faults   []fault       `json:"faults"`
	Requests requestReport `json:"requests"`
	// Identities in Postgres at the end; OutboxUnpublished their identity.created rows the
	// relay had not published.
	Identities        int `json:"identities"`
	OutboxUnpublished int `json:"outbox_unpublished"`
	// HalfRegistrations: identities without their password credential, its identifier or a
	// session, or without their identity.created outbox row. AnsweredNotStored: identities a
	// 200 answer named that Postgres does not have.
	HalfRegistrations []string `json:"half_registrations"`
	AnsweredNotStored []string `json:"answered_not_stored"`
	// DrainS is how long delivery took after the load stopped.
	DrainS    float64          `json:"drain_s"`
	Receivers []receiverReport `json:"receivers"`
	// Lost describes each identity whose identity.created did not reach a receiver in time,
	// with its delivery's state in Postgres.
	Lost    []string `json:"lost"`
	Crashes []string `json:"crashes"`
	OK      bool     `json:"ok"`
	Reasons []string `json:"reasons,omitempty"`

	okIDs map[string]time.Time
}

// identities lists the identity ids in Postgres.
func (r *rig) identities(ctx context.Context) ([]string, error) {
	rows, _ := r.db.Query(ctx, `SELECT id::text FROM identities ORDER BY id`)
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// check reads Postgres and the receivers into res.
func (r *rig) check(ctx context.Context, res *result, ids []string, loadStart, loadEnd time.Time) error {
	res.Identities = len(ids)
	rows, _ := r.db.Query(ctx, `SELECT i.id::text FROM identities i
WHERE NOT EXISTS (SELECT 1 FROM identity_credentials c WHERE c.identity_id = i.id AND c.type = 'password')
   OR NOT EXISTS (SELECT 1 FROM identity_credential_identifiers x WHERE x.identity_id = i.id AND x.type = 'password')
   OR NOT EXISTS (SELECT 1 FROM sessions s WHERE s.identity_id = i.id)
   OR NOT EXISTS (SELECT 1 FROM event_outbox o WHERE o.type = 'identity.created' AND o.payload->'data'->'identity'->>'id' = i.id::text)
ORDER BY i.id`)
	half, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("half registrations: %w", err)
	}
	res.HalfRegistrations = half
	if err := r.db.QueryRow(ctx, `SELECT count(*) FROM event_outbox WHERE type = 'identity.created' AND published_at IS NULL`).
		Scan(&res.OutboxUnpublished); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	have := make(map[string]bool, len(ids))
	for _, id := range ids {
		have[id] = true
	}
	res.AnsweredNotStored = []string{}
	for id := range res.okIDs {
		if !have[id] {
			res.AnsweredNotStored = append(res.AnsweredNotStored, id)
		}
	}
	sort.Strings(res.AnsweredNotStored)
	res.Lost = []string{}
	for _, rc := range []struct {
		recv *receiver
		hook string
	}{{r.hookRecv, hookID}, {r.epRecv, endpointID}} {
		rep := rc.recv.report(ids, res.okIDs, loadStart, loadEnd)
		missing := rc.recv.missing(ids)
		for i, id := range missing {
			if i == 20 {
				res.Lost = append(res.Lost, fmt.Sprintf("... and %d more at %s", len(missing)-20, rc.recv.name))
				break
			}
			res.Lost = append(res.Lost, fmt.Sprintf("%s: identity %s: %s", rc.recv.name, id, r.deliveryState(ctx, rc.hook, id)))
			if i < 5 {
				rep.MissingIDs = append(rep.MissingIDs, id)
			}
		}
		res.Receivers = append(res.Receivers, rep)
	}
	return nil
}

// deliveryState says what Postgres knows of the delivery of identity id's identity.created to
// hook: no delivery row, or its state, attempts and next attempt.
func (r *rig) deliveryState(ctx context.Context, hook, id string) string {
	var state string
	var attempts int
	var next *time.Time
	err := r.db.QueryRow(ctx, `SELECT state, attempts, next_attempt_at FROM webhook_deliveries
WHERE hook_id = $1 AND identity_id = $2 AND event_type = 'identity.created' ORDER BY created_at LIMIT 1`, hook, id).
		Scan(&state, &attempts, &next)
	if err == pgx.ErrNoRows {
		var published *time.Time
		_ = r.db.QueryRow(ctx, `SELECT published_at FROM event_outbox WHERE type = 'identity.created'
AND payload->'data'->'identity'->>'id' = $1`, id).Scan(&published)
		if published == nil {
			return "no delivery; outbox row not published"
		}
		return fmt.Sprintf("no delivery; outbox row published at %s", published.UTC().Format("15:04:05.000"))
	}
	if err != nil {
		return "delivery unreadable: " + err.Error()
	}
	s := fmt.Sprintf("delivery %s after %d attempts", state, attempts)
	if next != nil {
		s += ", next attempt at " + next.UTC().Format("15:04:05.000")
	}
	return s
}

// decide sets OK and the reasons it is not.
func (res *result) decide() {
	var why []string
	if len(res.Lost) > 0 {
		why = append(why, fmt.Sprintf("%d identity.created deliveries missing", res.lostCount()))
	}
	if len(res.HalfRegistrations) > 0 {
		why = append(why, fmt.Sprintf("%d half registrations", len(res.HalfRegistrations)))
	}
	if len(res.AnsweredNotStored) > 0 {
		why = append(why, fmt.Sprintf("%d registrations answered 200 but not in Postgres", len(res.AnsweredNotStored)))
	}
	for _, rc := range res.Receivers {
		if rc.BadSignatures > 0 || rc.BadBodies > 0 {
			why = append(why, fmt.Sprintf("%s: %d bad signatures, %d bad bodies", rc.Name, rc.BadSignatures, rc.BadBodies))
		}
		if rc.EventsUnderTwoIDs > 0 {
			why = append(why, fmt.Sprintf("%s: %d events delivered under two webhook-ids", rc.Name, rc.EventsUnderTwoIDs))
		}
	}
	if len(res.Crashes) > 0 {
		why = append(why, fmt.Sprintf("%d processes crashed", len(res.Crashes)))
	}
	if res.Requests.OK == 0 {
		why = append(why, "no registration succeeded")
	}
	for _, f := range res.Faults {
		if f.Err != "" {
			why = append(why, fmt.Sprintf("fault %s at %.1fs failed to recover: %s", f.Kind, f.AtS, firstLine(f.Err)))
		}
	}
	res.Reasons = why
	res.OK = len(why) == 0
}

func (res *result) lostCount() int {
	n := 0
	for _, rc := range res.Receivers {
		n += rc.Missing
	}
	return n
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// print writes the human summary.
func (res *result) print(w io.Writer) {
	fmt.Fprintf(w, "chaos run: %d serve, %d worker, %d NATS nodes (R3 stream), %.0f registrations/s for %.0fs, seed %d\n",
		res.Serves, res.Workers, res.NATSNodes, res.Rate, res.DurationS, res.Seed)
	fmt.Fprintf(w, "\nfaults (%d):\n", len(res.Faults))
	for _, f := range res.Faults {
		fmt.Fprintf(w, "  %6.1fs  %-13s %s\n", f.AtS, f.Kind, firstLine(f.describe()))
	}
	fmt.Fprintf(w, "\nregistrations: %d sent, %d ok\n", res.Requests.Sent, res.Requests.OK)
	keys := make([]string, 0, len(res.Requests.Failed))
	for k := range res.Requests.Failed {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  failed  %5d  %s\n", res.Requests.Failed[k], k)
	}
	fmt.Fprintf(w, "\nPostgres: %d identities, %d half registrations, %d answered 200 but not stored, %d identity.created unpublished\n",
		res.Identities, len(res.HalfRegistrations), len(res.AnsweredNotStored), res.OutboxUnpublished)
	fmt.Fprintf(w, "delivery drained %.1fs after the load stopped\n", res.DrainS)
	for _, rc := range res.Receivers {
		fmt.Fprintf(w, "  %-8s delivered %d/%d (missing %d), %d received, %d flapped (503), duplicates: %d webhook-ids (%d extra copies, at most %d copies), %d events under two ids, bad signatures %d, longest stall %.1fs at %.1fs\n",
			rc.Name, rc.Delivered, rc.Expected, rc.Missing, rc.Received, rc.Flapped, rc.DuplicateIDs, rc.DuplicateCopies,
			rc.MaxCopies, rc.EventsUnderTwoIDs, rc.BadSignatures, float64(rc.LongestStallMS)/1000, rc.StallStartS)
		fmt.Fprintf(w, "           answer-to-delivery delay p50 %d ms, p99 %d ms, max %.1fs (registration answered at %.1fs)\n",
			rc.DelayP50MS, rc.DelayP99MS, float64(rc.DelayMaxMS)/1000, rc.DelayMaxAtS)
	}
	for _, l := range res.Lost {
		fmt.Fprintf(w, "  LOST %s\n", l)
	}
	for _, c := range res.Crashes {
		fmt.Fprintf(w, "  CRASH %s\n", firstLine(c))
	}
	if res.OK {
		fmt.Fprintln(w, "\nOK: every committed event delivered at least once to both receivers, no half registration")
	} else {
		fmt.Fprintf(w, "\nFAILURE: %s\n", strings.Join(res.Reasons, "; "))
	}
}
