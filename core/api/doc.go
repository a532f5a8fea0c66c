// Package api is Latch's HTTP edge: the conventions every endpoint shares with Ory Kratos, and
// the one place where a request becomes the values domain code takes.
//
// It owns the error container (`{"error":{id,code,status,reason,message}}` plus the Ory-Error-Id
// header), JSON answers with Kratos' cache headers, JSON request bodies capped at MaxBodyBytes,
// keyset pagination (page_size, page_token, Link), and Edge, which builds a request's Meta: the
// client address (the TCP peer's unless a trusted proxy vouches for another), user agent, URL and
// allow-listed headers, never credentials. Flows, sessions and events take a Meta, never an
// *http.Request; no other package below cmd reads a client address (tests/layout checks it).
//
// It is a shared leaf: it imports nothing from Latch, and core's, sessions' and webhooks'
// handlers use it. It knows nothing of flows, identities or sessions; domain packages return
// domain errors (or an *Error where the HTTP meaning is inherent) and handlers render them here.
package api
