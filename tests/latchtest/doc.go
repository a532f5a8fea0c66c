// Package latchtest is the harness the end-to-end suites under tests/ share (e2e, pipeline,
// reload, browser): it builds the real `latch` binary, gives a suite throw-away Postgres
// databases on the server of TEST_DATABASE_URL, picks free loopback ports, renders a suite's
// configuration template, starts `latch` child processes and stops them (SIGTERM, then SIGKILL),
// waits for /health/ready and registers identities through the public API.
//
// It owns only that set-up, plus the one SMTP receiver every suite's courier delivers to
// (SMTPReceiver: records mails, extracts their 6-digit codes, can stall or refuse); what a suite
// asserts, its configuration templates and its other fakes (webhook receivers, NATS servers, SDK
// clients) stay in the suite. It must not be imported by
// non-test code, and nothing in it skips: a missing Postgres, a binary that does not build or a
// process that does not start fails the run, under CI=true and on a laptop alike.
//
// Every child process runs with a minimal environment (Latch lets environment variables override
// configuration keys, so the developer's own must not leak in) and, on Linux, with a
// parent-death signal, so that a `go test` timeout that panics past every clean-up leaves no
// orphan holding ports or databases. Its output is kept and printed when the test fails.
//
// Functions that take a testing.TB fail the test themselves and register their clean-ups with
// it; the others return errors, for TestMain, which has no testing.TB.
package latchtest
