// Command load drives a running Latch server with closed-loop HTTP clients and reports
// throughput, errors, exact latency percentiles and the CPU time each party used, so that a
// number in docs/BENCHMARKS.md always comes with the share of the 2 cores the generator took.
//
// It owns nothing but its own process: it never starts, configures or stops a server, and it
// touches the database only through the public API (it registers the users it needs). Point it
// at a server you started yourself (--dev creates the database named in the DSN), for example:
//
//	go build -o /tmp/latch ./cmd/latch && go build -o /tmp/load ./bench/load
//	/tmp/latch serve --dev -c bench/latch-bench.yaml &   # bcrypt cost 4, session hook, log warn
//	/tmp/load -scenario all -c 64 -d 10s -server-pid $!
//	kill %1; psql -h 127.0.0.1 -U postgres -c 'DROP DATABASE latch_bench'
//
// bench/measure.sh does all of that for every number in docs/BENCHMARKS.md. Use the built
// latch binary, not `go run`: -server-pid must be the server itself, not the go command.
//
// Scenarios:
//
//   - whoami: registers -sessions users through the API registration flow (the server must run
//     the `session` hook after password registration so the response carries session_token),
//     then sends GET /sessions/whoami with X-Session-Token, round-robin over the tokens. Only
//     200 counts as a success; every other status is an error and is reported with a sample body.
//   - register: each iteration is GET /self-service/registration/api followed by
//     POST /self-service/registration?flow=<id> with a fresh email. 200 is a success.
//   - login: registers -users users first, then each iteration is GET /self-service/login/api
//     followed by POST /self-service/login?flow=<id> with one of them. 200 is a success. Every
//     client is one address: with login throttling, raise
//     selfservice.flows.login.throttle.max_address_failures above -c, or the address locks.
//   - extend-admin, extend-self: registers -sessions users, then sends PATCH
//     /admin/sessions/{id}/extend (admin API) or PATCH /sessions/extend with X-Session-Token
//     (public API; the server needs session.self_service_extend.enabled), each client on its own
//     sessions round-robin. With the default earliest_possible_extend (the lifespan) every call
//     moves the expiry and writes a session.extended event. 200 is a success.
//   - all: whoami, register, login, one after the other.
//   - observe: sends nothing and only measures CPU, so that an external generator (wrk, given
//     with -client-pid) is accounted for like this command itself.
//
// Every run has a warm-up (-warmup, not recorded) and a measured window (-d); both are bounded
// and the command stops by itself. An operation counts when it completes inside the window.
// Latencies are kept as a slice per client and sorted at the end: exact, and at a few hundred
// thousand samples cheaper than a histogram library.
//
// CPU is reported in cores (CPU seconds per second of the window) for the whole machine
// (/proc/stat), the load generator (getrusage, or -client-pid), the server (-server-pid) and
// Postgres (the shared Postgres processes plus the backends of -pg-database). What is left is
// "other": on a shared machine, someone else. -idle-below waits for a quiet machine before a run
// and -max-other repeats a run that was disturbed anyway.
//
// With -tokens-out the whoami set-up writes the tokens one per line, and -setup-only stops
// there, so that wrk (bench/wrk/whoami.lua) can replay the same sessions with less client CPU.
package main
