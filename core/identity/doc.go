// Package identity owns the identity model (its Kratos-shaped JSON, its states, its credentials)
// and the SQL that reads and writes identities, credentials and identifiers.
//
// It is a shared leaf: it imports nothing from Latch. It sits under core because core owns
// identities, but sessions reads the same model (whoami joins the identity row into its one
// query), so it cannot live in core's flow package without making sessions depend on flows.
// Events do not import it: writers render the identity to JSON before it enters a payload.
// It must not know about flows, hooks, HTTP or sessions.
package identity
