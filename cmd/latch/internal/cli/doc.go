// Package cli is the operator's command line: `latch identities`, `latch sessions`,
// `latch endpoints` and `latch deliveries`, run against the admin API of a running Latch, as
// Ory Kratos' `kratos list identities` and friends are.
//
// It owns the command-line side only: flags, the admin API endpoint (-e/--endpoint, else
// LATCH_ADMIN_URL, else Kratos' KRATOS_ADMIN_URL), the HTTP client and how its failures read,
// the output (tables, JSON), and the progress of bulk operations (imports, replays). It is a
// client of the admin API like any other: it speaks HTTP and JSON only, imports nothing of
// Latch, and can do nothing that API does not offer. Every request goes through Client, every
// answer leaves through the printer in output.go, so that errors and formats read the same
// in every command.
package cli
