package webhooks

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/latchhq/latch/events"
)

// Metrics are the counters the worker updates as it works, so that an operator sees delivery
// rates, failures by cause and endpoint latency per hook without querying the database.
type Metrics struct {
	attempts *prometheus.CounterVec
	duration *prometheus.HistogramVec
	creates  *prometheus.CounterVec
	pruned   prometheus.Counter
	erased   prometheus.Counter
	breakers *prometheus.CounterVec
	disabled *prometheus.CounterVec
}

// NewMetrics creates the worker's metrics and registers them with reg (nil: unregistered, for
// tests and for a worker nobody scrapes). It panics if they are registered already, like
// prometheus.MustRegister: that is a wiring bug.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latch_webhook_attempts_total",
			Help: "Webhook delivery attempts by hook and outcome (success or the error class).",
		}, []string{"hook", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "latch_webhook_attempt_duration_seconds",
			Help:    "Duration of webhook delivery attempts, connection to response, by hook.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30},
		}, []string{"hook"}),
		creates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latch_webhook_deliveries_created_total",
			Help: "Webhook deliveries created by fan-out, by hook.",
		}, []string{"hook"}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "latch_webhook_deliveries_pruned_total",
			Help: "Final webhook deliveries deleted (with their attempts) after webhooks.retention.",
		}),
		erased: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "latch_webhook_deliveries_erased_total",
			Help: "Webhook deliveries whose body and attempt excerpts were erased because their identity was deleted.",
		}),
		breakers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latch_webhook_breaker_opened_total",
			Help: "Circuit breaker openings: a hook reached " + fmt.Sprint(BreakerThreshold) + " failed attempts in a row and is paced.",
		}, []string{"hook"}),
		disabled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latch_webhook_endpoints_disabled_total",
			Help: "Endpoints disabled because they kept failing for webhooks.endpoint_disable_after.",
		}, []string{"endpoint"}),
	}
	if reg != nil {
		reg.MustRegister(m.attempts, m.duration, m.creates, m.pruned, m.erased, m.breakers, m.disabled)
	}
	return m
}

// observe counts one attempt. Attempts that made no request (hook_removed) have no duration.
func (m *Metrics) observe(hook, outcome string, d time.Duration) {
	m.attempts.WithLabelValues(hook, outcome).Inc()
	if d > 0 {
		m.duration.WithLabelValues(hook).Observe(d.Seconds())
	}
}

func (m *Metrics) created(hook string) { m.creates.WithLabelValues(hook).Inc() }

func (m *Metrics) breakerOpened(hook string) { m.breakers.WithLabelValues(hook).Inc() }

func (m *Metrics) endpointDisabled(hook string) { m.disabled.WithLabelValues(hook).Inc() }

// scrapeTimeout bounds the state collector's queries: a slow database must not hang /metrics.
const scrapeTimeout = 2 * time.Second

var (
	deliveriesDesc = prometheus.NewDesc("latch_webhook_deliveries",
		"Webhook deliveries by state (pending and dead; succeeded grows forever, see latch_webhook_attempts_total) and hook.",
		[]string{"state", "hook"}, nil)
	outboxLagDesc = prometheus.NewDesc("latch_outbox_lag_seconds",
		"Age of the oldest event not yet published to JetStream (0 when none).", nil, nil)
	consumerPendingDesc = prometheus.NewDesc("latch_webhook_consumer_pending",
		"Events not yet fanned out: the webhook consumer's pending plus unacknowledged messages.", nil, nil)
	failuresDesc = prometheus.NewDesc("latch_webhook_consecutive_failures",
		"Failed attempts in a row of each hook that has been attempted (0: its last attempt succeeded); the circuit breaker opens at "+
			fmt.Sprint(BreakerThreshold)+".", []string{"hook"}, nil)
	scrapeErrorDesc = prometheus.NewDesc("latch_webhook_state_scrape_error",
		"1 when the last scrape could not read the source (postgres or nats), else 0.", []string{"source"}, nil)
)

// stateCollector reads queue state at scrape time, so the numbers are the database's and
// JetStream's, not one process's view.
type stateCollector struct {
	db *pgxpool.Pool
	js jetstream.JetStream
}

// NewStateCollector returns a collector of latch_webhook_deliveries{state,hook},
// latch_outbox_lag_seconds, latch_webhook_consecutive_failures{hook} and
// latch_webhook_consumer_pending (of DefaultConsumer), read at
// scrape time within a short timeout. Register it in one process only (latch serve), since
// every process would report the same numbers. js may be nil; an unreachable NATS is skipped
// and reported by latch_webhook_state_scrape_error{source="nats"}.
func NewStateCollector(db *pgxpool.Pool, js jetstream.JetStream) prometheus.Collector {
	return &stateCollector{db: db, js: js}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- deliveriesDesc
	ch <- outboxLagDesc
	ch <- consumerPendingDesc
	ch <- failuresDesc
	ch <- scrapeErrorDesc
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	pgFailed := 0.0
	if err := c.collectPostgres(ctx, ch); err != nil {
		pgFailed = 1
	}
	ch <- prometheus.MustNewConstMetric(scrapeErrorDesc, prometheus.GaugeValue, pgFailed, "postgres")

	natsFailed := 0.0
	if pending, err := c.consumerPending(ctx); err != nil {
		natsFailed = 1
	} else {
		ch <- prometheus.MustNewConstMetric(consumerPendingDesc, prometheus.GaugeValue, pending)
	}
	ch <- prometheus.MustNewConstMetric(scrapeErrorDesc, prometheus.GaugeValue, natsFailed, "nats")
}

func (c *stateCollector) collectPostgres(ctx context.Context, ch chan<- prometheus.Metric) error {
	rows, err := c.db.Query(ctx, `SELECT state, hook_id, count(*) FROM webhook_deliveries
		WHERE state IN ('pending', 'dead') GROUP BY state, hook_id`)
	if err != nil {
		return err
	}
	type count struct {
		state, hook string
		n           int64
	}
	counts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (count, error) {
		var k count
		return k, r.Scan(&k.state, &k.hook, &k.n)
	})
	if err != nil {
		return err
	}
	for _, k := range counts {
		ch <- prometheus.MustNewConstMetric(deliveriesDesc, prometheus.GaugeValue, float64(k.n), k.state, k.hook)
	}
	var lag float64
	err = c.db.QueryRow(ctx, `SELECT COALESCE(extract(epoch FROM now() - min(created_at)), 0)::float8
		FROM event_outbox WHERE published_at IS NULL`).Scan(&lag)
	if err != nil {
		return err
	}
	ch <- prometheus.MustNewConstMetric(outboxLagDesc, prometheus.GaugeValue, lag)
	return c.collectHealth(ctx, ch)
}

// collectHealth reports every hook's failure streak, as webhook_health holds it for all workers.
func (c *stateCollector) collectHealth(ctx context.Context, ch chan<- prometheus.Metric) error {
	rows, err := c.db.Query(ctx, `SELECT hook_id, consecutive_failures FROM webhook_health`)
	if err != nil {
		return err
	}
	var hook string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&hook, &n}, func() error {
		ch <- prometheus.MustNewConstMetric(failuresDesc, prometheus.GaugeValue, float64(n), hook)
		return nil
	})
	return err
}

func (c *stateCollector) consumerPending(ctx context.Context) (float64, error) {
	if c.js == nil {
		return 0, jetstream.ErrJetStreamNotEnabled
	}
	cons, err := c.js.Consumer(ctx, events.StreamName, DefaultConsumer)
	if err != nil {
		return 0, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, err
	}
	return float64(info.NumPending) + float64(info.NumAckPending), nil
}
