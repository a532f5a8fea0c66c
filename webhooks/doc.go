// Package webhooks owns Latch's durable web_hook delivery: the resolved web_hook
// configuration (Hook, Registry) and its Kratos-compatible Jsonnet body templates, request
// building and Standard Webhooks signing, the HTTP sender with its SSRF guard, the retry
// schedule, deliveries, attempts, dead letters and replay, the worker loop that fans events out
// into deliveries and dispatches them, and the admin API over all of that.
//
// The flow is described in docs/EVENTS.md: core commits an outbox row with the flow's
// transaction, the events relay publishes it to JetStream, and this package's worker turns each
// event into one delivery row per matching hook, then attempts each delivery on its stored
// schedule until it succeeds, the receiver answers 410 Gone, or the schedule runs out (dead,
// replayable). Retry state lives in Postgres, never in a goroutine or a timer.
//
// Besides Kratos' flow web_hooks, the package owns endpoints (endpoints*.go): Svix-style targets
// subscribed to event types, from the configuration or stored through the admin API, which every
// process reloads within a second (EndpointSync). Both kinds are Hooks to the worker, and share
// its per-hook machinery: health and the circuit breaker (health.go), rate limits and
// per-identity ordering (flowcontrol.go), retention and erasure of what deliveries keep
// (retention.go), and the admin API documented in openapi.yaml.
//
// Before-persist web_hooks (response.parse, can_interrupt, and `before` hooks) take another
// path: the flow core asks over NATS request/reply (Caller), any worker's Responder makes the
// call within the flow's deadline and answers continue, interrupt, modify or failed; the call is
// recorded as a delivery of type hook.call (visible, not replayable).
//
// Two layers of retry, deliberately: inside one attempt, Sender retries a connection refused or
// reset before any response a few times within the attempt's timeout; across attempts,
// NextAttempt reads the hook's schedule. Every attempt is signed afresh over the delivery's
// stored bytes, so retries and replays verify with the same secrets.
//
// Tracing (tracing.go, docs/TRACING.md): a call continues the flow's trace from the NATS
// request's headers; fan-out copies the flow's trace context from each message's headers onto
// its delivery rows, and each attempt is a span of its own linked to the flow. A hook with
// SendTraceparent also sends that context to its endpoint; no other does.
//
// What it must not touch: it imports only events (the envelope and catalogue), core/api (the
// Kratos error JSON and pagination conventions of its admin API, a leaf) and core/hooks (the
// hook plan and the call contract it shares with the flow core, a leaf) from Latch. It does not
// know about flows, identities or sessions beyond the JSON in an event and the plan's flow
// names, never writes core's tables, and never fetches configuration or templates over the
// network. FromPlan turns the plan cmd/latch compiles into Hooks; cmd/latch wires everything.
package webhooks
