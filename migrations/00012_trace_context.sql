-- +goose Up
-- Tracing across the asynchronous hop (docs/TRACING.md). The W3C trace context
-- ({"traceparent": "00-...", "tracestate": "..."}) of the span that wrote a row: the flow step
-- behind an outbox row, copied by fan-out from the NATS message's headers onto each delivery, so
-- that the worker's delivery span can link to the flow that caused it. NULL when tracing is off.
-- It is kept beside the envelope, never inside it: the envelope is what receivers get.
ALTER TABLE event_outbox ADD COLUMN trace_context jsonb;
ALTER TABLE webhook_deliveries ADD COLUMN trace_context jsonb;
-- Opt-in per endpoint: send the flow's traceparent (and tracestate) with each request.
ALTER TABLE webhook_endpoints ADD COLUMN send_traceparent boolean NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE webhook_endpoints DROP COLUMN send_traceparent;
ALTER TABLE webhook_deliveries DROP COLUMN trace_context;
ALTER TABLE event_outbox DROP COLUMN trace_context;
