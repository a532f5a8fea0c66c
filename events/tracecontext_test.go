package events_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"

	"github.com/latchhq/latch/events"
)

// spanContext is a sampled remote span context, as a flow's span would carry.
func spanContext(t *testing.T) trace.SpanContext {
	t.Helper()
	ts, err := trace.ParseTraceState("vendor=a1")
	if err != nil {
		t.Fatal(err)
	}
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:  trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}, TraceFlags: trace.FlagsSampled, TraceState: ts,
	})
}

func TestTraceContextRoundTrip(t *testing.T) {
	t.Parallel()
	sc := spanContext(t)
	tc := events.TraceContextOf(trace.ContextWithSpanContext(context.Background(), sc))
	if tc.Traceparent != "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01" || tc.Tracestate != "vendor=a1" {
		t.Fatalf("TraceContextOf = %+v", tc)
	}
	if got := events.ParseTraceContext([]byte(tc.JSON())); got != tc {
		t.Errorf("ParseTraceContext(JSON) = %+v, want %+v", got, tc)
	}
	h := nats.Header{}
	tc.SetHeader(h)
	if got := events.TraceContextFromHeader(h); got != tc {
		t.Errorf("header round trip = %+v, want %+v", got, tc)
	}
	if l := tc.Links(); len(l) != 1 || l[0].SpanContext.TraceID() != sc.TraceID() || l[0].SpanContext.SpanID() != sc.SpanID() {
		t.Errorf("Links = %+v", l)
	}
	if got := events.TraceContextOf(context.Background()); !got.IsZero() || got.JSON() != "" || got.Links() != nil {
		t.Errorf("no span: %+v, want zero", got)
	}
}

// Whatever a NATS header or a column holds, only a well-formed W3C trace context goes further
// (a row, an outgoing HTTP request), re-encoded; anything else is dropped.
func TestTraceContextRefusesHostileInput(t *testing.T) {
	t.Parallel()
	valid := "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01"
	for name, h := range map[string]nats.Header{
		"CR LF injection":   {"traceparent": {valid + "\r\nX-Evil: 1"}},
		"garbage":           {"traceparent": {"hello"}},
		"all-zero trace id": {"traceparent": {"00-00000000000000000000000000000000-0102030405060708-01"}},
		"unknown version":   {"traceparent": {"ff-0102030405060708090a0b0c0d0e0f10-0102030405060708-01"}},
		"NUL":               {"traceparent": {"00-0102030405060708090a0b0c0d0e0f10-01020304050607\x00-01"}},
		"upper case key":    {"Traceparent": {valid}},
		"empty":             {},
	} {
		if got := events.TraceContextFromHeader(h); !got.IsZero() {
			t.Errorf("%s: %+v, want zero", name, got)
		}
	}
	// A hostile tracestate is dropped, the valid traceparent kept.
	got := events.TraceContextFromHeader(nats.Header{"traceparent": {valid}, "tracestate": {strings.Repeat("k=v\r\n,", 10000)}})
	if got.Traceparent != valid || got.Tracestate != "" {
		t.Errorf("hostile tracestate: %+v", got)
	}
	for _, raw := range []string{`{`, `[]`, `{"traceparent": 7}`, `{"traceparent": "x"}`, `null`} {
		if got := events.ParseTraceContext([]byte(raw)); !got.IsZero() {
			t.Errorf("ParseTraceContext(%s) = %+v, want zero", raw, got)
		}
	}
}

// An event written under a span is published with its trace context in the message's headers,
// and only there: the envelope is the same bytes as without tracing. Without a span the row's
// column is NULL and the message has no trace headers.
func TestRelay_CarriesTheTraceContextInHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := events.NewOutbox()
	r := events.NewRelay(b.db, b.js, o, events.RelayConfig{}, nil)
	run(t, r)
	sub := b.subscribe(t)

	sc := spanContext(t)
	traced := trace.ContextWithSpanContext(context.Background(), sc)
	var envs []events.Envelope
	for _, ctx := range []context.Context{traced, context.Background()} {
		err := pgx.BeginFunc(ctx, b.db, func(tx pgx.Tx) error {
			e, err := o.Insert(ctx, tx, b.event(len(envs)))
			envs = append(envs, e...)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		o.Wake()
	}
	var stored []*string
	rows, err := b.db.Query(context.Background(), `SELECT trace_context::text FROM event_outbox WHERE id = ANY($1) ORDER BY seq`, ids(envs))
	if err != nil {
		t.Fatal(err)
	}
	stored, err = pgx.CollectRows(rows, pgx.RowTo[*string])
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 2 || stored[0] == nil || !strings.Contains(*stored[0], sc.TraceID().String()) || stored[1] != nil {
		t.Fatalf("trace_context columns = %v, want the span's context, then NULL", stored)
	}

	for i := range envs {
		m, err := sub.NextMsg(waitTimeout)
		if err != nil {
			t.Fatal(err)
		}
		var env events.Envelope
		if err := json.Unmarshal(m.Data, &env); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(m.Data), "traceparent") || strings.Contains(string(m.Data), sc.TraceID().String()) {
			t.Errorf("the envelope carries the trace context: %s", m.Data)
		}
		tc := events.TraceContextFromHeader(m.Header)
		switch env.ID {
		case envs[0].ID:
			if got := tc.SpanContext(); got.TraceID() != sc.TraceID() || got.SpanID() != sc.SpanID() || tc.Tracestate != "vendor=a1" {
				t.Errorf("message %d: trace context %+v, want the writer's", i, tc)
			}
		case envs[1].ID:
			if m.Header.Get("traceparent") != "" || m.Header.Get("tracestate") != "" {
				t.Errorf("an event written without a span has trace headers %v", m.Header)
			}
		}
	}
}
