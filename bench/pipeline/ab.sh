#!/bin/sh
# Before/after in one sitting, interleaved (A, B, A, B, ...), so that a drift of the machine
# hits both builds alike; then the drain with 1, 2 and 3 worker processes (build B). Results go
# to $OUT/a.jsonl, $OUT/b.jsonl and $OUT/scale.jsonl, tables to stdout. The machine may be
# shared: runs do not wait for quiet (-quiet-wait 0) and each records the "other" cores it saw.
#
#	git worktree add /tmp/before <rev> && (cd /tmp/before && go build -o /tmp/pipe-a ./bench/pipeline)
#	go build -o /tmp/pipe-b ./bench/pipeline
#	ROUNDS=3 OUT=/tmp/ab sh bench/pipeline/ab.sh /tmp/pipe-a /tmp/pipe-b
set -u
a=$1 b=$2
out=${OUT:-/tmp/pipe-ab}
rounds=${ROUNDS:-3}
backlog=${BACKLOG:-20000}
mkdir -p "$out"
one() { # bin file args...
	bin=$1 file=$2
	shift 2
	"$bin" -json -quiet-wait 0 "$@" >>"$file" 2>>"$out/stderr.log" || echo "run failed: $bin $*" >&2
}
for i in $(seq "$rounds"); do
	echo "== round $i $(date -u +%T)" >&2
	for mode in "-mode paced -rate 1000 -d 10s" "-mode closed -writers 16 -d 10s" "-mode drain -backlog $backlog"; do
		# shellcheck disable=SC2086
		one "$a" "$out/a.jsonl" $mode
		# shellcheck disable=SC2086
		one "$b" "$out/b.jsonl" $mode
	done
done
for i in $(seq "${SCALE_ROUNDS:-1}"); do
	echo "== scaling round $i $(date -u +%T)" >&2
	for n in 1 2 3; do
		one "$b" "$out/scale.jsonl" -mode drain -backlog "$backlog" -worker-procs "$n"
	done
done
echo "== done $(date -u +%T)" >&2
for f in a b scale; do
	echo "### $f"
	"$b" -summarize "$out/$f.jsonl"
done
