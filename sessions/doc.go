// Package sessions owns Latch's sessions: the Kratos-shaped session model, issuing a session and
// its token inside the caller's transaction (only SHA-256 of the token is stored), sealing the
// session cookie with rotating secrets, finding a session by its token (whoami, whose lookups
// concurrent requests share in one pipelined batch: lookup.go), listing,
// revoking and extending sessions, the session lifecycle events (session.revoked,
// session.extended, written to the outbox in the same transaction), and the public and admin
// HTTP handlers for all of that.
//
// Domain functions take values: a token, a session id, a Device built from what the HTTP edge
// established (NewDevice); only edge.go and the handlers read requests, and the client address
// comes from api.Meta, never from a header read here. It reads identities through
// core/identity (whoami joins the identity row into its one query) and answers HTTP errors
// through core/api. It must not know about flows or hooks, and it never writes identities.
package sessions
