// Package core owns Latch's self-service flows (registration, login, settings, logout,
// recovery and verification by code) and
// their state, running the hook plan (the before and pre-persist web_hook calls through a worker,
// the inline hooks inside the flow's transaction), the admin identity API and the HTTP handlers
// of both.
//
// HTTP is a transport. The handlers (http_flows.go, browser.go, csrf.go, public.go, admin.go,
// extend.go's handler) turn a request into values: the flow id, the decoded submission, the
// request's session and one api.Meta (client address, user agent, URL, allow-listed headers).
// Flows take (ctx, input, meta) and return domain errors (errors.go); publicError is the one
// mapping from those to Kratos' answers.
//
// State changes only under the lock. Every step that writes runs in inTx: one transaction that
// reads the rows it changes with FOR UPDATE (or FOR SHARE), writes only the fields the step
// changes, writes the events it caused in the same commit and wakes the relay afterwards.
// Nothing read before a hook call or a password hash is written back: hashes and hooks run
// first, the transaction re-reads. Registration and login claim their flow row, so a flow
// yields at most one identity or session however often it is submitted.
//
// Recovery and verification codes (codes.go) are stored only as HMACs keyed to their flow; the
// plain code exists only in the courier message queued in the same transaction (events.
// QueueMessage), never in an event, a log line or an error.
//
// Subpackages: identity (the identity model and its SQL, shared with sessions), password
// (hashing and policy), api (Kratos' wire conventions and the HTTP edge), hooks (the hook plan
// compiled once from the configuration and the before-persist call contract, a leaf shared
// with webhooks), dbtest (test databases).
package core
