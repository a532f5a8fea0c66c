// Package events owns what Latch says happened and how it gets onto the bus without dual writes.
//
// It owns:
//
//   - the event catalogue: type names (identity.created, session.revoked, ...), the envelope
//     ({"id", "type", "timestamp", "data"}) and the typed payloads, which only ever gain fields;
//   - subjects (latch.events.<type>) and the LATCH_EVENTS stream declaration;
//   - the transactional outbox writer: [Outbox.Insert] adds rows to event_outbox inside the
//     caller's transaction, so an event exists if and only if the change that caused it commits;
//   - the relay: [Relay] publishes committed rows to JetStream with Nats-Msg-Id = event id, marks
//     them published, keeps them for a retention period and prunes them after. It is woken in
//     process by [Outbox.Wake], from other processes by LISTEN/NOTIFY, and polls as a backstop;
//     [Lag] reports how far it is behind;
//   - the embedded NATS server used by `latch serve --dev` and by tests (package natstest);
//   - the trace context across the asynchronous hop ([TraceContext]): the writer's span context
//     stored beside its outbox rows and carried in the messages' headers, never in the envelope
//     (docs/TRACING.md).
//
// Delivery is at-least-once. The relay may publish a row twice (a crash between publish and
// mark); JetStream drops the copy inside the stream's duplicates window, and consumers
// de-duplicate on the event id after it.
//
// It must not know flows, identities' or sessions' storage, or webhooks: the identity or session
// inside a payload is JSON rendered by the writer (core, sessions), and consumers (webhooks) read
// the stream. It imports nothing from Latch but the shared leaves, and nothing here may grow a
// dependency on the packages that use it. See docs/EVENTS.md for the whole pipeline.
package events
