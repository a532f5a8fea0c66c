// Package console is Latch's admin console: server-rendered HTML pages on the admin port, under
// /admin/console, where an operator finds an identity, sees its sessions and events,
// deactivates it or revokes its sessions; sees webhook endpoints with their health, deliveries
// with their attempts, replays them one by one or in bulk, edits, enables and disables
// endpoints; and follows the events as they are written.
//
// It owns only presentation: pages (html/template, templates/), their static assets (static/:
// its stylesheet, a few lines of script, and the vendored htmx with its SSE extension, which
// make links, forms and the live tail work without full reloads; every page also works without
// script), the console's CSRF protection, and the operator.action event each change records.
// It must not hold SQL or domain rules: it reads and changes state only through the owning
// packages' domain APIs (core for identities, sessions, webhooks, events), in a transaction it
// opens so that its operator.action event commits with the change.
//
// Trust: the admin port has no authentication, exactly like Kratos' admin API, and the console
// adds none; it must sit behind the operator's network boundary (docs/CONSOLE.md). What it does
// add is browser-facing protection: every state change is a POST checked by net/http's
// CrossOriginProtection and by a per-form token bound to a cookie with an HMAC over
// secrets.default, and every page is sent with a strict Content-Security-Policy.
package console
