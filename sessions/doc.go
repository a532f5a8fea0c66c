// Package sessions owns Latch's sessions: the Kratos-shaped session model, issuing a session and
// its token inside the caller's transaction (only SHA-256 of the token is stored), sealing the
// session cookie with rotating secrets, finding a request's session (whoami), listing, revoking
// and extending sessions, and the public and admin HTTP handlers for all of that.
//
// It reads identities through core/identity (whoami joins the identity row into its one query)
// and answers HTTP errors through core/api. It must not know about flows, hooks, events or
// webhooks: callers that need a session step to emit events or run hooks do it themselves, in
// the transaction they pass to Issue, RevokeOthers or ExtendTx. It never writes identities.
package sessions
