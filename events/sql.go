package events

// The queries on event_outbox (migrations/00002_event_outbox.sql), grouped here so the table's
// whole contract reads in one place.
// relayLockKey is the advisory lock of relayLockSQL: 0x6c6174636801, "latch" in ASCII then 1,
// so that it does not collide with the locks of anything else sharing the database (decimal:
// Postgres before 16 has no hexadecimal literals).
const relayLockKey = "119165820299265"

const (
	// insertSQL adds every event of one Insert call in one statement, whatever their number;
	// unnest keeps the argument order, so seq follows the order the writer passed. $4 is the
	// writer's trace context (TraceContext.JSON), shared by every row of the call; NULL without
	// tracing.
	insertSQL = `INSERT INTO event_outbox (id, type, payload, trace_context)
SELECT u.id, u.type, u.payload, $4::jsonb FROM unnest($1::uuid[], $2::text[], $3::jsonb[]) AS u(id, type, payload)`

	// notifySQL wakes relays in other processes. Postgres delivers it at commit, and only if the
	// transaction commits.
	notifySQL = `SELECT pg_notify('latch_outbox', '')`

	// listenSQL subscribes a relay's dedicated connection to notifySQL's channel.
	listenSQL = `LISTEN latch_outbox`

	// relayLockSQL makes one relay at a time claim and publish, whatever the number of `latch
	// serve` processes, so that the stream receives events in outbox seq order (the order
	// ordered webhook endpoints deliver them in). The lock is the transaction's: it ends with
	// the batch's commit or rollback, and with the connection of a relay that dies.
	relayLockSQL = `SELECT pg_try_advisory_xact_lock(` + relayLockKey + `)`

	// beginSQL and commitSQL frame the relay's transaction inside its pipelined batches.
	beginSQL  = `begin`
	commitSQL = `commit`

	// relayAsyncCommitSQL lets the relay's commit return before its WAL record is flushed. What
	// it commits is only the published marks: a Postgres crash that loses them leaves those
	// rows unpublished, and the next batch publishes them again with the same Nats-Msg-Id, which
	// JetStream de-duplicates (and fan-out's unique (event_id, hook_id) absorbs after the
	// duplicates window). The events themselves were made durable by their writers' commits.
	// The relay holds the relay lock until the commit returns, so the flush no longer delays
	// the next batch.
	relayAsyncCommitSQL = `SET LOCAL synchronous_commit = off`

	// claimSQL locks the oldest unpublished rows that no other relay holds. SKIP LOCKED lets any
	// number of relays share the table without waiting on each other or publishing a row twice.
	// It claims only under the relay lock: the gate (an uncorrelated sub-select, evaluated once
	// before the scan) takes it again, which is a no-op when relayLockSQL took it just before in
	// the same pipelined batch, and claims nothing when another relay holds it, so a standby
	// never locks rows that the active relay would then skip.
	// It returns the envelope's parts rather than the payload, so that the relay assembles the
	// published JSON without decoding it (jsonb reorders the envelope's keys). The fallbacks only
	// matter for rows not written by Insert. trace_context (NULL without tracing) goes into the
	// message's headers.
	claimSQL = `SELECT seq, id, type,
    coalesce(payload->>'timestamp', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
    coalesce(payload->'data', 'null'::jsonb), trace_context
FROM event_outbox
WHERE published_at IS NULL AND (SELECT pg_try_advisory_xact_lock(` + relayLockKey + `))
ORDER BY seq
LIMIT $1
FOR UPDATE SKIP LOCKED`

	// markSQL records the rows JetStream acknowledged, in the claiming transaction.
	markSQL = `UPDATE event_outbox SET published_at = now() WHERE seq = ANY($1::bigint[])`

	// lagSQL reads the age of the first unpublished row in insertion order, through the partial
	// index, so that a metrics scrape stays cheap even with a large backlog.
	lagSQL = `SELECT (extract(epoch FROM now() - created_at) * 1000000)::bigint
FROM event_outbox
WHERE published_at IS NULL
ORDER BY seq
LIMIT 1`

	// pruneSQL deletes one bounded batch of rows published before the cutoff ($1 microseconds
	// ago, on the database's clock). SKIP LOCKED lets several relays prune at once.
	pruneSQL = `WITH doomed AS (
    SELECT seq FROM event_outbox
    WHERE published_at < now() - $1::bigint * interval '1 microsecond'
    ORDER BY published_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
DELETE FROM event_outbox o USING doomed d WHERE o.seq = d.seq`
)

// The operators' reads (history.go). Each walks the primary key (seq) only.
const (
	// historyTailSQL reads the newest rows above a seq.
	historyTailSQL = `SELECT seq, id, type, payload, created_at, published_at FROM event_outbox
WHERE seq > $1 ORDER BY seq DESC LIMIT $2`

	// historyIdentitySQL filters a bounded window of the newest rows below a seq by the identity
	// an event is about (data.identity_id, else data.identity.id); the window, not the filter,
	// bounds the rows read.
	historyIdentitySQL = `SELECT seq, id, type, payload, created_at, published_at FROM (
    SELECT seq, id, type, payload, created_at, published_at FROM event_outbox
    WHERE seq < $2 ORDER BY seq DESC LIMIT $3
) w
WHERE coalesce(payload #>> '{data,identity_id}', payload #>> '{data,identity,id}') = $1
ORDER BY seq DESC LIMIT $4`

	// historyWindowFloorSQL is the first seq below that window (where the next page starts),
	// NULL when the window reached the oldest row.
	historyWindowFloorSQL = `SELECT (SELECT seq FROM event_outbox WHERE seq < $1 ORDER BY seq DESC OFFSET $2 LIMIT 1)`

	// historyGetSQL reads one row by event id (the unique index on id).
	historyGetSQL = `SELECT seq, id, type, payload, created_at, published_at FROM event_outbox WHERE id = $1`
)
