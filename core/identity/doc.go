// Package identity owns the identity model (its Kratos-shaped JSON, its states, its credentials)
// and the SQL that reads and writes identities, credentials and identifiers.
//
// It is a leaf: it imports nothing from Latch. It sits under core because core owns identities,
// but sessions (whoami joins the identity row) and events (payloads carry the identity) read the
// same model, so it cannot live in core's flow package without making them depend on flows.
// It must not know about flows, hooks, HTTP or sessions.
package identity
