package webhooks

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// scrape returns the value of every sample of reg, keyed by name and labels, e.g.
// `latch_webhook_attempts_total{hook="ok",outcome="success"}`.
func scrape(t testing.TB, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			if len(m.GetLabel()) > 0 {
				key += "{"
				for i, l := range m.GetLabel() {
					if i > 0 {
						key += ","
					}
					key += l.GetName() + `="` + l.GetValue() + `"`
				}
				key += "}"
			}
			out[key] = value(f.GetType(), m)
		}
	}
	return out
}

func value(typ dto.MetricType, m *dto.Metric) float64 {
	switch typ {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return 0
}

func TestWorkerMetrics(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	reg := prometheus.NewRegistry()
	b.metrics = NewMetrics(reg)
	ok := newSink(t, nil)
	bad := newSink(t, func(w http.ResponseWriter, _ *http.Request, _ int) { w.WriteHeader(http.StatusInternalServerError) })
	badHook := b.hook("bad", bad.URL)
	badHook.Schedule = []time.Duration{0}
	b.setHooks(t, b.hook("ok", ok.URL), badHook)
	b.start(t, WorkerConfig{})
	b.publishN(t, 1)
	eventually(t, 10*time.Second, "both deliveries final", func() bool {
		return countDeliveries(t, b.db, "state <> 'pending'") == 2
	})
	got := scrape(t, reg)
	for k, want := range map[string]float64{
		`latch_webhook_attempts_total{hook="ok",outcome="success"}`:      1,
		`latch_webhook_attempts_total{hook="bad",outcome="http_status"}`: 1,
		`latch_webhook_deliveries_created_total{hook="ok"}`:              1,
		`latch_webhook_deliveries_created_total{hook="bad"}`:             1,
		`latch_webhook_attempt_duration_seconds{hook="ok"}`:              1,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], want, got)
		}
	}
}

func TestStateCollector(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	ctx := context.Background()
	for range 2 {
		seed(t, b.db, "x", "https://x.example/")
	}
	seed(t, b.db, "x", "https://x.example/", "state = 'dead'")
	seed(t, b.db, "y", "https://y.example/", "state = 'succeeded'")
	_, err := b.db.Exec(ctx, `INSERT INTO event_outbox (id, type, payload, created_at) VALUES ($1, 'identity.created', '{}', now() - interval '5 seconds')`, uuid.New())
	if err != nil {
		t.Fatal(err)
	}
	// The consumer the collector reads is the default one; declare it with a backlog of 3.
	b.consumer = DefaultConsumer
	w, err := NewWorker(b.db, b.js, b.reg, b.sender, WorkerConfig{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.declareConsumer(ctx); err != nil {
		t.Fatal(err)
	}
	b.publishN(t, 3)

	reg := prometheus.NewRegistry()
	reg.MustRegister(NewStateCollector(b.db, b.js))
	got := scrape(t, reg)
	for k, want := range map[string]float64{
		`latch_webhook_deliveries{hook="x",state="pending"}`:  2,
		`latch_webhook_deliveries{hook="x",state="dead"}`:     1,
		`latch_webhook_consumer_pending`:                      3,
		`latch_webhook_state_scrape_error{source="postgres"}`: 0,
		`latch_webhook_state_scrape_error{source="nats"}`:     0,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], want, got)
		}
	}
	if lag := got["latch_outbox_lag_seconds"]; lag < 4.5 || lag > 60 {
		t.Errorf("outbox lag %v, want about 5 s", lag)
	}

	// Without NATS the database metrics still come, and the error says which source failed.
	reg = prometheus.NewRegistry()
	reg.MustRegister(NewStateCollector(b.db, nil))
	got = scrape(t, reg)
	if got[`latch_webhook_state_scrape_error{source="nats"}`] != 1 || got[`latch_webhook_deliveries{hook="x",state="pending"}`] != 2 {
		t.Errorf("without NATS: %v", got)
	}
	if _, ok := got[`latch_webhook_consumer_pending`]; ok {
		t.Errorf("consumer pending reported without NATS")
	}
}
