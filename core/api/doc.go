// Package api holds the HTTP wire conventions every Latch endpoint shares with Ory Kratos: the
// error container (`{"error":{id,code,status,reason,message}}` plus the Ory-Error-Id header), JSON
// responses with Kratos' cache headers, and keyset pagination (page_size, page_token, Link).
//
// It is a leaf used by core's handlers and by sessions' handlers. It knows nothing of flows,
// identities or sessions; domain packages return domain errors and only handlers call this.
package api
