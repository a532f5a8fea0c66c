#!/usr/bin/env bash
# Reproduces the tables of docs/BENCHMARKS.md: builds latch and the load command, starts latch
# (--dev, bench/latch-bench.yaml) against a fresh database latch_bench, runs every scenario
# RUNS times, then the argon2 memory-cap runs, and drops the database again. One JSON (or wrk
# text) file per run lands in $OUT, and a summary (median and range per cell) is printed.
#
#   bench/measure.sh                 # everything, about 15 minutes
#   STEPS=whoami bench/measure.sh    # only some steps: whoami wrk flows extend argon2
#   REV=8e18e9c bench/measure.sh     # measure a commit (git archive into $OUT/src), not the tree
#
# Needs: Go, psql, a local PostgreSQL reachable as postgres@127.0.0.1:5432 without a password,
# wrk for the wrk step, jq for the summary. Nothing else may use the machine meanwhile: before
# every run the load command waits until the machine uses fewer than $IDLE cores, and each
# result reports "other_cores" (CPU that was neither generator, latch nor Postgres); a run with
# more than $MAX_OTHER is repeated (up to 8 times in all), and still-disturbed cells are flagged.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-/tmp/latch-bench-results}
RUNS=${RUNS:-3}
IDLE=${IDLE:-0.15}
MAX_OTHER=${MAX_OTHER:-0.15}
STEPS=${STEPS:-whoami wrk flows extend argon2}
ADMIN_DSN=${ADMIN_DSN:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
# On a machine that others use too: another database, other ports and another NATS directory
# (DB=latch_mine PUBLIC_PORT=4533 ADMIN_PORT=4534 NATS_DIR=/tmp/mine-nats), passed to latch
# through its environment variables.
DB=${DB:-latch_bench}
PUBLIC_PORT=${PUBLIC_PORT:-4433}
ADMIN_PORT=${ADMIN_PORT:-4434}
PUBLIC=http://127.0.0.1:$PUBLIC_PORT
ADMIN=http://127.0.0.1:$ADMIN_PORT
NATS_DIR=${NATS_DIR:-/tmp/latch-bench-nats} # nats.store_dir in bench/latch-bench.yaml
mkdir -p "$OUT"

# Binaries first, so that neither compile time nor `go run` is measured. The load command is
# always built from this tree; latch from REV when given.
go build -o "$OUT/load" ./bench/load
if [[ -n ${REV:-} ]]; then
	rm -rf "$OUT/src" && mkdir -p "$OUT/src"
	git archive "$REV" | tar -x -C "$OUT/src"
	(cd "$OUT/src" && go build -o "$OUT/latch" ./cmd/latch)
	echo "latch $(git rev-parse --short "$REV")" >"$OUT/version.txt"
else
	go build -o "$OUT/latch" ./cmd/latch
	echo "latch $(git rev-parse --short HEAD) + working tree" >"$OUT/version.txt"
fi
{
	grep -m1 'model name' /proc/cpuinfo
	echo "nproc $(nproc)"
	free -h | head -2
	uname -r
	go version
	psql "$ADMIN_DSN" -Atc 'select version()'
	wrk -v 2>&1 | head -1 || true
} >>"$OUT/version.txt"

LATCH_PID=
start_latch() { # start_latch [ENV=VALUE...] -- CONFIG...
	local env=()
	while [[ $1 != -- ]]; do env+=("$1"); shift; done
	shift
	local args=()
	for f in "$@"; do args+=(-c "$f"); done
	psql "$ADMIN_DSN" -qc "DROP DATABASE IF EXISTS $DB" 2>/dev/null
	rm -rf "$NATS_DIR"
	# Every client here is 127.0.0.1. Builds with login throttling count each login in flight as a
	# failure of its address until it succeeds, so 64 concurrent logins from one address lock it
	# (default max_address_failures 50). Raise that limit: the throttle's statements still run.
	# Builds without the key ignore the variable.
	env SELFSERVICE_FLOWS_LOGIN_THROTTLE_MAX_ADDRESS_FAILURES=1000000 \
		DSN="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable" NATS_STORE_DIR="$NATS_DIR" \
		SERVE_PUBLIC_PORT="$PUBLIC_PORT" SERVE_PUBLIC_BASE_URL="$PUBLIC" SERVE_ADMIN_PORT="$ADMIN_PORT" \
		"${env[@]}" "$OUT/latch" serve --dev "${args[@]}" >>"$OUT/latch.log" 2>&1 &
	LATCH_PID=$!
}
stop_latch() {
	if [[ -n $LATCH_PID ]]; then
		kill "$LATCH_PID" && wait "$LATCH_PID" || true
		LATCH_PID=
		psql "$ADMIN_DSN" -qc "DROP DATABASE IF EXISTS $DB"
		rm -rf "$NATS_DIR"
	fi
}
trap stop_latch EXIT

# load NAME ARGS...: one run of the load command, its JSON report saved as $OUT/NAME.json.
load() {
	local name=$1; shift
	"$OUT/load" -json -public "$PUBLIC" -admin "$ADMIN" -pg-database "$DB" -server-pid "$LATCH_PID" -idle-below "$IDLE" -max-other "$MAX_OTHER" -attempts 8 "$@" >"$OUT/$name.json"
	jq -c '{scenario, clients, per_second, errors, p50: .latency_ms.p50, p99: .latency_ms.p99, cpu}' "$OUT/$name.json"
}

has() { [[ " $STEPS " == *" $1 "* ]]; }

if has whoami || has wrk || has flows; then
	start_latch -- bench/latch-bench.yaml
fi
if has whoami; then
	for i in $(seq "$RUNS"); do load "whoami-c64-$i" -scenario whoami -c 64 -d 10s -warmup 2s -sessions 1000; done
fi
if has wrk; then
	"$OUT/load" -public "$PUBLIC" -admin "$ADMIN" -scenario whoami -setup-only -sessions 1000 -tokens-out "$OUT/tokens.txt"
	for i in $(seq "$RUNS"); do
		for attempt in 1 2 3 4 5 6 7 8; do
			"$OUT/load" -scenario observe -d 100ms -warmup 0 -idle-below "$IDLE" >/dev/null # wait for quiet
			TOKENS=$OUT/tokens.txt wrk -t2 -c64 -d13s -s bench/wrk/whoami.lua "$PUBLIC" >"$OUT/wrk-whoami-c64-$i.txt" &
			w=$!
			# The observed window is seconds 2..12 of wrk's 13: warm-up excluded, wrk's end not reached.
			"$OUT/load" -json -pg-database "$DB" -scenario observe -d 10s -warmup 2s -server-pid "$LATCH_PID" -client-pid "$w" >"$OUT/wrk-whoami-c64-$i.json"
			wait "$w"
			jq -e --argjson max "$MAX_OTHER" '.cpu.other_cores <= $max' "$OUT/wrk-whoami-c64-$i.json" >/dev/null && break
			echo "wrk run $i: other processes used $(jq .cpu.other_cores "$OUT/wrk-whoami-c64-$i.json") cores; repeating" >&2
		done
		grep -E 'Requests/sec|Non-2xx|Socket errors|^p(50|99):' "$OUT/wrk-whoami-c64-$i.txt" | tr '\n' ' '
		jq -c .cpu "$OUT/wrk-whoami-c64-$i.json"
	done
fi
if has flows; then
	for c in 16 64; do
		for i in $(seq "$RUNS"); do
			load "register-c$c-$i" -scenario register -c "$c" -d 10s -warmup 2s
			load "login-c$c-$i" -scenario login -c "$c" -d 10s -warmup 2s -users 200
		done
	done
fi
stop_latch

if has extend; then
	# Session extension (issue 12): admin PATCH /admin/sessions/{id}/extend and self-service
	# PATCH /sessions/extend, 8 clients, each on its own sessions. With the default
	# earliest_possible_extend (the lifespan) every call moves the expiry and commits a
	# session.extended event, which the relay publishes to JetStream during the run.
	start_latch SESSION_SELF_SERVICE_EXTEND_ENABLED=true -- bench/latch-bench.yaml
	for i in $(seq "$RUNS"); do
		load "extend-admin-c8-$i" -scenario extend-admin -c 8 -d 10s -warmup 2s -sessions 1000
		load "extend-self-c8-$i" -scenario extend-self -c 8 -d 10s -warmup 2s -sessions 1000
	done
	stop_latch
fi

if has argon2; then
	# A fresh process per run, so that VmHWM (peak RSS since start) belongs to that run alone.
	a2=(bench/latch-bench.yaml bench/latch-bench-argon2.yaml)
	for i in $(seq "$RUNS"); do
		for c in 16 64 256; do
			start_latch -- "${a2[@]}"
			load "argon2-login-c$c-$i" -scenario login -c "$c" -d 10s -warmup 2s -users 64 -setup-c 2 -timeout 60s
			stop_latch
		done
		# The same burst with a soft memory limit: the GC keeps the heap near it.
		start_latch GOMEMLIMIT=384MiB -- "${a2[@]}"
		load "argon2-gomemlimit-login-c64-$i" -scenario login -c 64 -d 10s -warmup 2s -users 64 -setup-c 2 -timeout 60s
		stop_latch
	done
	# Control: the cap raised to 16 hashes in flight (latency ~25 s, hence the long warm-up).
	start_latch HASHERS_ARGON2_MAX_CONCURRENT=16 -- "${a2[@]}"
	load "argon2-cap16-login-c64" -scenario login -c 64 -d 10s -warmup 30s -users 64 -setup-c 2 -timeout 120s
	stop_latch
fi

# Summary: median [min-max] of the rate, median p50/p99 and cores, per cell.
echo
echo "cell | runs | per second median [min-max] | p50 ms | p99 ms | cores: generator / latch / postgres / other | peak RSS MiB"
for cell in whoami-c64 extend-admin-c8 extend-self-c8 register-c16 login-c16 register-c64 login-c64 argon2-login-c16 argon2-login-c64 argon2-login-c256 argon2-gomemlimit-login-c64 argon2-cap16-login-c64; do
	files=("$OUT/$cell"-*.json "$OUT/$cell.json")
	files=($(ls "${files[@]}" 2>/dev/null || true))
	[[ ${#files[@]} -gt 0 ]] || continue
	jq -rs --arg cell "$cell" '
		def med(f): (map(f) | sort | .[(length - 1) / 2 | floor]);
		def r2: (. * 100 | round / 100);
		"\($cell) | \(length) | \(med(.per_second) | round) [\(map(.per_second) | min | round)-\(map(.per_second) | max | round)]"
		+ " | \(med(.latency_ms.p50)) | \(med(.latency_ms.p99))"
		+ " | \(med(.cpu.load_generator_cores) | r2) / \(med(.cpu.server_cores) | r2) / \(med(.cpu.postgres_cores) | r2) / \(med(.cpu.other_cores // 0) | r2)"
		+ " | \(map(.cpu.server_peak_rss_mib) | max | round)"
		+ (if any(.[]; (.cpu.other_cores // 0) > 0.15) then "  <- a run had other_cores > 0.15: repeat" else "" end)
		+ (if any(.[]; .errors > 0) then "  <- ERRORS" else "" end)' "${files[@]}"
done
if ls "$OUT"/wrk-whoami-c64-*.txt >/dev/null 2>&1; then
	for f in "$OUT"/wrk-whoami-c64-*.txt; do
		printf '%s: %s req/s, p50 %s ms, p99 %s ms, non-2xx %s; cores %s\n' "$(basename "$f" .txt)" \
			"$(awk '/Requests\/sec/ {print $2}' "$f")" "$(awk '/^p50:/ {print $2}' "$f")" "$(awk '/^p99:/ {print $2}' "$f")" \
			"$(awk '/Non-2xx/ {print $NF}' "$f" | grep . || echo 0)" \
			"$(jq -r '.cpu | "wrk \(.load_generator_cores*100|round/100) latch \(.server_cores*100|round/100) postgres \(.postgres_cores*100|round/100) other \(.other_cores*100|round/100)"' "${f%.txt}.json")"
	done
fi
