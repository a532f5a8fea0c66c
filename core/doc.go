// Package core owns Latch's self-service flows (registration, login, settings, logout) and
// their state, running the hook plan (the before and pre-persist web_hook calls through a worker,
// the inline hooks inside the flow's transaction), the admin identity API and the HTTP handlers
// of both.
//
// Every flow step that changes state runs in one Postgres transaction: identity, credentials,
// the session the `session` hook issues and the sessions `revoke_active_sessions` ends commit
// together or not at all. Handlers turn domain errors into Kratos' JSON (a flow with UI messages
// for validation problems, the generic error container otherwise); nothing below the handlers
// speaks HTTP status codes.
//
// Subpackages: identity (the identity model and its SQL, shared with sessions), password
// (hashing and policy), api (Kratos' error and pagination conventions), hooks (the hook plan
// compiled once from the configuration and the before-persist call contract, a leaf shared with
// webhooks), dbtest (test databases).
package core
