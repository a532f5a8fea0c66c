// Command pipeline measures the durable webhook pipeline end to end, in one process, on a
// fresh database: the registration transaction a flow commits (identity, password credential,
// session, identity.created outbox row), the outbox relay woken after each commit, JetStream
// (embedded, file storage), the webhook worker's fan-out into webhook_deliveries, its signed
// POST, and an HTTP receiver on 127.0.0.1 that verifies each signature and records when the
// webhook arrived (by default to one flow web_hook; with -endpoints N to N webhook endpoints).
// It reports the throughput, the latency from the start of the transaction (and from its
// commit) to the webhook being received, exact percentiles, and the CPU each party used, so
// that a number in docs/BENCHMARKS.md always comes with the machine's load.
//
// It owns only its own database, latch_pipebench_<random>, created on the server of -dsn,
// migrated with goose over package migrations and dropped at the end (also on Ctrl-C), and a
// temporary JetStream store directory. It starts no Latch server and touches nothing else.
//
//	go run ./bench/pipeline -mode paced -rate 1000 -d 10s
//	go run ./bench/pipeline -mode closed -writers 16 -d 10s
//	go run ./bench/pipeline -mode drain -backlog 50000
//	go run ./bench/pipeline -mode drain -backlog 5000 -endpoints 10
//
// Modes:
//
//   - paced: an open loop. A 1 ms ticker releases -rate events per second for -d into a queue
//     that -writers goroutines take from; each event records its scheduled time, so writers that
//     cannot keep up show as start lag instead of hiding in a lower rate. Then it waits (at
//     most -wait) until every event is delivered.
//   - closed: -writers goroutines commit as fast as they can for -d, then it waits the same way.
//   - drain: with the relay running and the worker stopped, -writers goroutines commit -backlog
//     events and the relay puts them on the stream; once every one is there, the worker starts
//     and the command measures deliveries/s until the receiver has them all.
//
// Hooks: without -endpoints (or -endpoints 0) the worker delivers to one after-persist flow
// web_hook, registration.after.password.0, as a Kratos config declares it. -endpoints N
// registers N webhook endpoints instead (endpoint-00, endpoint-01, ...), each subscribed to
// identity.*, with its own secret and its own URL on the receiver ("?e=i"), so that every
// committed event makes N deliveries. The receiver verifies each with its endpoint's secret
// and counts deliveries per endpoint; throughput is reported in deliveries/s (all endpoints
// together) and events/s, CPU per delivery. In every mode the counts below are deliveries.
//
// paced and closed first run a warm-up (-warmup, not counted) of the same load and wait for
// its deliveries, so that the measured window starts with pooled connections and a warm
// receiver. Every committed event must arrive exactly once at every endpoint with a valid
// signature: a missing delivery, a repeated webhook-id or event at one endpoint, a bad
// signature, an endpoint that received another count than the events committed, or a delivery
// not recorded as succeeded is reported as FAILURE and the command exits 1.
//
// The writers run what a password registration commits, minus the password hash (measured
// separately: it caps registrations at 7-80/s on this machine, see the limits reference) and
// minus the HTTP request and the flow row's update: identity.Store.Insert with a password
// credential, sessions.Manager.Issue, events.Outbox.Insert of identity.created with flow
// {registration, password}, COMMIT, then Outbox.Wake. The event carries its sequence number
// and the transaction's start time (unix ns) in flow.transient_payload; the receiver reads
// them from the delivered body.
//
// Before measuring, the command waits (polling every 30 s, at most -quiet-wait) until no
// other benchmark runs on the machine (`latch serve`, bench/load, another pipeline run) and
// the machine is nearly idle; afterwards it reports the CPU that processes other than itself
// and its Postgres used during the window, and flags the run when that exceeds -max-other.
//
// -json prints one JSON object per run; -summarize FILE... reads such lines back and prints
// the median and range of each configuration as a Markdown table. run-all.sh runs the set
// docs/BENCHMARKS-PIPELINE.md reports.
//
// For finding what limits a number: -cpuprofile writes a CPU profile of the measured window;
// -count-statements counts, per event, the statements the process sends to Postgres (a pgx
// tracer; it costs a little CPU, so leave it off for the table); -per-hook-concurrency and
// -fetch-batch set the worker's knobs; -worker-procs N runs the worker as N child processes of
// this binary (N `latch worker`s sharing the durable consumer, NATS then listening on a random
// port of 127.0.0.1), started and connected before the window and released at its start, their
// CPU counted with the process's; -after-migrate runs SQL (an index, say) on the fresh
// database before the run; -keep-db leaves the database for inspection. Process and Postgres
// CPU are exact (scheduler run time from getrusage and /proc/<pid>/stat); the machine-wide
// figure comes from /proc/stat's tick sampling and under-counts short bursts at low rates.
package main
