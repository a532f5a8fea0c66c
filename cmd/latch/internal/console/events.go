package console

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/latchhq/latch/events"
)

// The live tail: the events page renders the newest tailSize events, then (unless paused) an
// EventSource on /events/stream adds each new one at the top as the outbox receives it; the
// page's script keeps the newest tailSize rows. The stream polls the outbox by seq once per
// tailPoll: it works with every deployment (no broker subscription, no LISTEN connection per
// viewer) and costs one primary-key range read per viewer per poll. Viewers are bounded by
// maxStreams, and a stream ends after streamLifetime (the browser reconnects from where it was,
// with Last-Event-ID), so none is held for ever.
const (
	tailSize       = 50
	tailPoll       = time.Second
	streamLifetime = 5 * time.Minute
	// tailLookback is how far below its last seq a stream looks again: outbox transactions
	// commit a few milliseconds out of seq order, so a row can appear below one already sent.
	tailLookback = 256
)

func contextWithoutCancel(r *http.Request) context.Context { return context.WithoutCancel(r.Context()) }

// events serves the live tail page; ?paused=1 renders it without the stream.
func (c *Console) events(w http.ResponseWriter, r *http.Request) {
	recs, err := c.d.History.Tail(r.Context(), 0, tailSize)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	var last int64
	if len(recs) > 0 {
		last = recs[len(recs)-1].Seq
	}
	// Newest first on the page, as new rows arrive at the top.
	rows := make([]events.Record, len(recs))
	for i, rec := range recs {
		rows[len(recs)-1-i] = rec
	}
	c.render(w, r, http.StatusOK, "events", map[string]any{"Records": rows, "Last": last,
		"Paused": r.URL.Query().Get("paused") == "1", "Max": tailSize})
}

// event shows one event's envelope while the outbox keeps it.
func (c *Console) event(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		c.fail(w, r, errNotFound("event"))
		return
	}
	rec, err := c.d.History.Get(r.Context(), id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "event", map[string]any{"Record": rec})
}

// stream serves the live tail as server-sent events: one "latch" event per outbox row, its
// data an escaped table row, its id the row's seq.
func (c *Console) stream(w http.ResponseWriter, r *http.Request) {
	after, err := streamStart(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	select {
	case c.streams <- struct{}{}:
		defer func() { <-c.streams }()
	default:
		// EventSource retries after its retry delay, by which time a slot may be free.
		http.Error(w, "too many live tails are open", http.StatusServiceUnavailable)
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no") // a buffering proxy would hold the events back
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return // the mux serves HEAD with GET's handler: headers only, no stream to hold open
	}
	if _, err := fmt.Fprint(w, "retry: 3000\n: live tail\n\n"); err != nil {
		return
	}
	_ = rc.Flush()

	ctx := r.Context()
	// sent holds the seqs near the cursor already shown: at first those the page (or the
	// previous connection) showed, which are at or below the starting position.
	sent := map[int64]bool{}
	start := after
	end := time.NewTimer(streamLifetime)
	defer end.Stop()
	tick := time.NewTicker(tailPoll)
	defer tick.Stop()
	for {
		recs, err := c.d.History.Tail(ctx, max(after-tailLookback, 0), tailSize)
		if err != nil {
			if ctx.Err() == nil {
				c.d.Log.WarnContext(ctx, "admin console live tail: read outbox", "error", err)
			}
			return
		}
		var buf bytes.Buffer
		for _, rec := range recs {
			if sent[rec.Seq] || rec.Seq <= after-tailLookback {
				continue
			}
			if start > 0 && rec.Seq <= start {
				sent[rec.Seq] = true // shown before this stream started
				continue
			}
			sent[rec.Seq] = true
			after = max(after, rec.Seq)
			if err := c.writeRow(&buf, rec); err != nil {
				c.d.Log.ErrorContext(ctx, "admin console live tail: render", "error", err)
				return
			}
		}
		start = 0 // from now on, anything unseen near the cursor is a late commit: show it
		for s := range sent {
			if s <= after-tailLookback {
				delete(sent, s)
			}
		}
		if buf.Len() > 0 {
			if _, err := w.Write(buf.Bytes()); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-c.stop:
			return
		case <-end.C:
			return
		case <-tick.C:
		}
	}
}

// streamStart is the seq a stream starts after: the browser's Last-Event-ID on a reconnect,
// else the page's ?after.
func streamStart(r *http.Request) (int64, error) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("after")
	}
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, errBadRequest("The stream position must be an outbox position.")
	}
	return n, nil
}

// writeRow appends one SSE message holding rec's table row. The row is rendered by
// html/template (everything from the outbox escaped); each of its lines becomes a data line.
func (c *Console) writeRow(buf *bytes.Buffer, rec events.Record) error {
	var row bytes.Buffer
	if err := c.rows.ExecuteTemplate(&row, "eventRow", rec); err != nil {
		return err
	}
	fmt.Fprintf(buf, "id: %d\nevent: latch\n", rec.Seq)
	// A bare CR ends a line for EventSource too: none may reach the stream inside a data line,
	// or text from the outbox could start a field of its own.
	text := strings.ReplaceAll(strings.TrimSpace(row.String()), "\r", " ")
	for _, line := range strings.Split(text, "\n") {
		buf.WriteString("data: ")
		buf.WriteString(line)
		buf.WriteByte('\n')
	}
	buf.WriteByte('\n')
	return nil
}
