#!/bin/sh
# The measurement set of docs/BENCHMARKS-PIPELINE.md: paced 1,000/s and 3,000/s for 10 s,
# closed loop with 16 writers for 10 s, and a 50,000-event drain, three runs each, interleaved
# so that a slow drift of the machine spreads over every configuration. Each run waits for a
# quiet machine first (-quiet-wait). Results are appended to $1 (one JSON object per run);
# further arguments are passed to every run. The Markdown table is printed at the end.
#
#	sh bench/pipeline/run-all.sh /tmp/pipebench.jsonl
#	sh bench/pipeline/run-all.sh /tmp/pipebench-idx.jsonl \
#		-after-migrate 'CREATE INDEX ON identity_credential_identifiers (credential_id)'
set -eu
out=${1:-/tmp/pipebench.jsonl}
[ $# -gt 0 ] && shift
bin=/tmp/latch-pipebench
go build -o "$bin" ./bench/pipeline
for i in 1 2 3; do
	echo "== round $i" >&2
	"$bin" -json "$@" -mode paced -rate 1000 -d 10s >>"$out" || true
	"$bin" -json "$@" -mode paced -rate 3000 -d 10s >>"$out" || true
	"$bin" -json "$@" -mode closed -writers 16 -d 10s >>"$out" || true
	"$bin" -json "$@" -mode drain -backlog 50000 >>"$out" || true
done
"$bin" -summarize "$out"
