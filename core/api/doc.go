// Package api holds the HTTP wire conventions every Latch endpoint shares with Ory Kratos: the
// error container (`{"error":{id,code,status,reason,message}}` plus the Ory-Error-Id header), JSON
// responses with Kratos' cache headers, keyset pagination (page_size, page_token, Link), and the
// one way request input is read: bodies capped at MaxBodyBytes (413 beyond), and JSON, form values
// and query parameters refused with a 400 when they carry NUL, bytes that are not UTF-8, lone
// UTF-16 surrogates or nesting deeper than MaxJSONDepth, none of which Postgres stores.
//
// It is a leaf used by core's handlers and by sessions' handlers. It knows nothing of flows,
// identities or sessions; domain packages return domain errors and only handlers call this.
package api
