package events

import "time"

// Test hooks for package events_test (this file is compiled only with the tests). Set them
// before Run; they are read without synchronisation.

// SetAfterPublish makes r call f after a batch's acks and before marking; an error from f aborts
// the batch as a crash between publish and mark would.
func SetAfterPublish(r *Relay, f func() error) { r.afterPublish = f }

// SetOnLoop makes r report when its loop goes idle ("idle") and what woke it: "outbox" (Wake),
// "listen" (NOTIFY, or the catch-up after LISTEN is established) or "poll".
func SetOnLoop(r *Relay, f func(event string)) { r.onLoop = f }

// SetOnBatch makes r report the rows of every committed batch.
func SetOnBatch(r *Relay, f func(n int)) { r.onBatch = f }

// SetClock replaces o's clock, which decides timestamps and the NOTIFY cooldown.
func SetClock(o *Outbox, now func() time.Time) { o.now = now }
