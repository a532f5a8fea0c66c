// Package migrations holds Latch's numbered SQL migrations, embedded into the binary so that
// `latch migrate up` needs nothing but the binary and a DSN. Files are applied in order of their
// zero-padded number; a file, once released, is never edited: add a new one instead.
package migrations

import "embed"

// FS holds every migration file. The migration runner in cmd/latch reads it.
//
//go:embed *.sql
var FS embed.FS
