// Package hooks is what the flow core and the webhook workers must agree on about hooks: the
// plan compiled once from the configuration's hook lists (which hook runs in which flow, for
// which method, in which phase and in which order, by Kratos' rules), and the contract of a
// before-persist call (subject, request, reply, outcomes, errors).
//
// It is a leaf: it imports nothing of Latch, so that core (which runs the plan's before,
// pre-persist and inline phases) and webhooks (which delivers the post-persist phase and answers
// the calls) both depend on it and never on each other. It knows hook names, ids and the two
// keys of a web_hook's config that decide its phase (response.parse, can_interrupt); the rest
// of a web_hook's config (url, auth, body, retry, ...) belongs to webhooks.
package hooks
