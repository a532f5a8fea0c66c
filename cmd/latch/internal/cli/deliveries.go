package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// delivery is the part of a delivery the tables show.
type delivery struct {
	ID            string  `json:"id"`
	EventID       string  `json:"event_id"`
	HookID        string  `json:"hook_id"`
	EventType     string  `json:"event_type"`
	IdentityID    *string `json:"identity_id"`
	URL           string  `json:"url"`
	State         string  `json:"state"`
	AttemptCount  int     `json:"attempt_count"`
	NextAttemptAt *string `json:"next_attempt_at"`
	LeasedBy      *string `json:"leased_by"`
	LastStatus    *int    `json:"last_status"`
	LastError     *string `json:"last_error"`
	CreatedAt     string  `json:"created_at"`
	ErasedAt      *string `json:"erased_at"`
	Attempts      []struct {
		Attempt      int     `json:"attempt"`
		StartedAt    string  `json:"started_at"`
		DurationMS   int     `json:"duration_ms"`
		StatusCode   *int    `json:"status_code"`
		ErrorClass   *string `json:"error_class"`
		Error        *string `json:"error"`
		ResponseBody *string `json:"response_body"`
	} `json:"attempts"`
}

var deliveryView = view{
	header: []string{"ID", "STATE", "HOOK", "EVENT TYPE", "ATTEMPTS", "LAST STATUS", "CREATED AT"},
	row: func(raw json.RawMessage) []string {
		var d delivery
		_ = json.Unmarshal(raw, &d)
		return []string{d.ID, d.State, d.HookID, d.EventType, strconv.Itoa(d.AttemptCount), optInt(d.LastStatus), timeText(d.CreatedAt)}
	},
}

// timeFlag reads --since and --until: an RFC 3339 time, or a duration meaning that long ago
// ("24h", "90m"), sent as RFC 3339 in UTC.
func timeFlag(name, v string, now time.Time) (string, error) {
	if v == "" {
		return "", nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC().Format(time.RFC3339Nano), nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d).UTC().Format(time.RFC3339Nano), nil
	}
	return "", usagef("--%s must be an RFC 3339 time (2026-01-02T15:04:05Z) or a duration ago (24h), not %q", name, v)
}

// deliveryFilters are the list filters deliveries list and deliveries replay share.
type deliveryFilters struct {
	state, hook, eventType, identity, since, until *string
}

func (c *command) deliveryFilterFlags() deliveryFilters {
	return deliveryFilters{
		state:     c.fs.String("state", "", "only deliveries in this `state`: pending, succeeded or dead"),
		hook:      c.fs.String("hook", "", "only deliveries of this webhook: an endpoint's `id` or a flow web_hook's id"),
		eventType: c.fs.String("event-type", "", "only deliveries of this event `type` (exact)"),
		identity:  c.fs.String("identity", "", "only deliveries about this identity `id`"),
		since:     c.fs.String("since", "", "only deliveries created at or after this `time` (RFC 3339, or a duration ago: 24h)"),
		until:     c.fs.String("until", "", "only deliveries created before this `time` (RFC 3339, or a duration ago)"),
	}
}

// query checks the filters and turns them into the list's query.
func (f deliveryFilters) query() (map[string][]string, error) {
	switch *f.state {
	case "", "pending", "succeeded", "dead":
	default:
		return nil, usagef("--state must be pending, succeeded or dead, not %q", *f.state)
	}
	if *f.identity != "" {
		if err := checkUUID(*f.identity, "identity"); err != nil {
			return nil, usagef("--identity %q: %v", oneLine(*f.identity, 80), err)
		}
	}
	now := time.Now()
	since, err := timeFlag("since", *f.since, now)
	if err != nil {
		return nil, err
	}
	until, err := timeFlag("until", *f.until, now)
	if err != nil {
		return nil, err
	}
	return escapeQuery("state", *f.state, "hook_id", *f.hook, "event_type", *f.eventType,
		"identity_id", *f.identity, "since", since, "until", until), nil
}

func deliveriesList(ctx context.Context, c *command) error {
	f := c.deliveryFilterFlags()
	pageSize := c.fs.Int("page-size", 100, "deliveries per request (1 to 1000)")
	limit := c.fs.Int("limit", 100, "stop after this many deliveries, newest first (0: all)")
	pos, err := c.parse()
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if err := checkPaging(*pageSize, *limit); err != nil {
		return err
	}
	q, err := f.query()
	if err != nil {
		return err
	}
	if err := c.connect(); err != nil {
		return err
	}
	items, err := c.client.All(ctx, "/admin/webhooks/deliveries", q, *pageSize, *limit)
	if err != nil {
		return err
	}
	return c.show(deliveryView, items, false)
}

func deliveriesGet(ctx context.Context, c *command) error {
	ids, err := c.parseIDs("delivery id")
	if err != nil {
		return err
	}
	items, failed := c.eachID(ctx, ids, "delivery", func(id string) (json.RawMessage, error) {
		a, err := c.client.Do(ctx, http.MethodGet, pathf("/admin/webhooks/deliveries/%s", id), nil, nil)
		if err != nil {
			return nil, err
		}
		return a.Body, nil
	})
	if c.quiet || c.format != "table" {
		return finish(c.show(deliveryView, items, len(ids) == 1), failed)
	}
	for i, raw := range items {
		if i > 0 {
			fmt.Fprintln(c.std.Stdout)
		}
		if err := c.deliveryDetail(raw); err != nil {
			return err
		}
	}
	return finish(nil, failed)
}

// deliveryDetail prints one delivery and its attempts, oldest first.
func (c *command) deliveryDetail(raw json.RawMessage) error {
	var d delivery
	_ = json.Unmarshal(raw, &d)
	state := d.State
	if d.LeasedBy != nil {
		state += ", being attempted by " + *d.LeasedBy
	}
	body := "kept"
	if d.ErasedAt != nil {
		body = "erased at " + timeText(*d.ErasedAt) + " (the identity was deleted)"
	}
	err := c.fields([][2]string{
		{"ID", d.ID},
		{"State", state},
		{"Hook", d.HookID},
		{"URL", d.URL},
		{"Event", d.EventType + " " + d.EventID},
		{"Identity", optString(d.IdentityID)},
		{"Attempts", strconv.Itoa(d.AttemptCount)},
		{"Next attempt", optTime(d.NextAttemptAt)},
		{"Last error", optString(d.LastError)},
		{"Created at", timeText(d.CreatedAt)},
		{"Body", body},
	})
	if err != nil || len(d.Attempts) == 0 {
		return err
	}
	fmt.Fprintln(c.std.Stdout)
	rows := make([][]string, len(d.Attempts))
	for i, a := range d.Attempts {
		msg := optString(a.ErrorClass)
		if a.Error != nil {
			msg = strings.TrimPrefix(msg+": "+*a.Error, ": ")
		}
		rows[i] = []string{strconv.Itoa(a.Attempt), timeText(a.StartedAt), strconv.Itoa(a.DurationMS) + "ms", optInt(a.StatusCode), msg}
	}
	return c.table([]string{"ATTEMPT", "STARTED AT", "DURATION", "STATUS", "ERROR"}, rows)
}

// deliveriesReplay makes deliveries due again now, each with its webhook-id unchanged. With ids
// it replays those; with filters (--state and --since at least, as the API's bulk replay
// requires, so a replay never sweeps the whole log by accident) it lists the matching
// deliveries first and replays them one by one, at most --concurrency at a time, so that the
// progress shows and each refusal (a delivery being attempted right now, one whose body was
// erased) is reported with its id instead of being skipped silently.
func deliveriesReplay(ctx context.Context, c *command) error {
	f := c.deliveryFilterFlags()
	concurrency := c.fs.Int("concurrency", 4, "replays at once (1 to 64)")
	dryRun := c.fs.Bool("dry-run", false, "with filters: list what would be replayed, replay nothing")
	pos, err := c.parse()
	if err != nil {
		return err
	}
	if *concurrency < 1 || *concurrency > 64 {
		return usagef("--concurrency must be between 1 and 64, not %d", *concurrency)
	}
	filtered := false
	for _, v := range []*string{f.state, f.hook, f.eventType, f.identity, f.since, f.until} {
		filtered = filtered || *v != ""
	}
	var ids []string
	switch {
	case filtered && len(pos) > 0:
		return usagef("give delivery ids or filters, not both")
	case filtered:
		if *f.state == "" || *f.since == "" {
			return usagef("a replay by filter needs --state and --since")
		}
	default:
		if *dryRun {
			return usagef("--dry-run needs filters")
		}
		if ids, err = c.ids(pos, "delivery id"); err != nil {
			return err
		}
		for _, id := range ids {
			if err := checkUUID(id, "delivery"); err != nil {
				return fmt.Errorf("%s: %w", oneLine(id, 80), err)
			}
		}
	}
	q, err := f.query()
	if err != nil {
		return err
	}
	if err := c.connect(); err != nil {
		return err
	}
	if filtered {
		matched, err := c.client.All(ctx, "/admin/webhooks/deliveries", q, 1000, 0)
		if err != nil {
			return fmt.Errorf("list the deliveries to replay: %w", err)
		}
		if *dryRun {
			if err := c.show(deliveryView, matched, false); err != nil {
				return err
			}
			if !c.quiet {
				fmt.Fprintf(c.std.Stderr, "dry run: %d deliveries would be replayed\n", len(matched))
			}
			return nil
		}
		for _, raw := range matched {
			ids = append(ids, idOf(raw))
		}
		if len(ids) == 0 {
			if !c.quiet {
				fmt.Fprintln(c.std.Stderr, "no delivery matches: nothing replayed")
			}
			return c.show(deliveryView, nil, false)
		}
	}
	return c.replayIDs(ctx, ids, *concurrency)
}

// replayIDs replays each id, with progress and a summary.
func (c *command) replayIDs(ctx context.Context, ids []string, concurrency int) error {
	type result struct {
		answer json.RawMessage
		err    error
	}
	prog := c.newProgress(len(ids), "replaying deliveries")
	replayed := make([]json.RawMessage, len(ids))
	t := tally{total: len(ids)}
	sent := 0
	_ = bulk(ctx, concurrency, func(send func(int) bool) error {
		for i := range ids {
			if !send(i) {
				return nil
			}
			sent++
		}
		return nil
	}, func(ctx context.Context, i int) result {
		a, err := c.client.Do(ctx, http.MethodPost, pathf("/admin/webhooks/deliveries/%s/replay", ids[i]), nil, nil)
		if err != nil {
			return result{err: err}
		}
		return result{answer: a.Body}
	}, func(i int, r result) {
		prog.step()
		if r.err != nil {
			t.failed++
			prog.println("latch: %s %s: %v", c.name, itemName(ids[i]), r.err)
			return
		}
		t.ok++
		replayed[i] = r.answer
	})
	prog.done()
	printErr := c.show(deliveryView, present(replayed), len(ids) == 1)
	interrupted := ctx.Err() != nil && sent < len(ids)
	if len(ids) > 1 && (!c.quiet || t.failed > 0 || interrupted) {
		fmt.Fprintln(c.std.Stderr, t.summary("replayed", "deliveries", interrupted))
	}
	return finish(printErr, t.failed > 0 || interrupted)
}
