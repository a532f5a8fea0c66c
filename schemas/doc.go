// Package schemas owns the JSON Schemas Latch runs on: the identity schemas
// that describe an identity's traits, and the JSON Schema of Latch's own
// configuration file.
//
// Identity schemas are loaded and compiled exactly once, at start-up, by
// [NewRegistry]. They are read only from places the operator controls
// (file:// and base64:// URLs, or the built-in default schema), every
// document is capped at 1 MiB and decoded with UseNumber, and nothing is
// ever fetched over the network — neither the schema nor a $ref inside it.
// A compiled [IdentitySchema] then answers everything the flows need to know
// about traits: whether they are valid ([IdentitySchema.Validate]), which
// values are password identifiers, verifiable and recovery addresses, and
// which form fields to render.
//
// Validation failures are returned as a typed [*ValidationError]: a list of
// Kratos-compatible UI messages (same ids, texts and contexts as Ory Kratos),
// each bound to a JSON pointer of the submitted document. Turning those into
// HTTP responses is the transport's job, not this package's.
//
// schemas is a leaf: it imports nothing from Latch, and must not. It knows
// nothing about storage, sessions, flows or HTTP.
package schemas
