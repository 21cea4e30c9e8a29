#!/bin/sh
# bench/prof_off.sh - what the profiling hooks cost when --profile is off: the same model
# built as usual and with -DBN_NO_PROFILE (the hooks and their test per kernel call
# compiled out), then `--bench --json` of each, interleaved, RUNS times; prints the medians
# of prefill and decode tokens/s and the ratio usual / hooks-out (1.000: no cost).
#
# Knobs (environment): MODEL (default the golden tiny model), BENCH (the program's bench
# options; default --pp 128 --tg 128 --reps 3), RUNS (7), OUT (bench/out), BUILD (build).
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
BUILD=${BUILD:-build}
RUNS=${RUNS:-7}
MODEL=${MODEL:-tests/data/golden/models/tiny-b158-i2_s.gguf}
BENCH=${BENCH:---pp 128 --tg 128 --reps 3}
mkdir -p "$OUT"
"$BUILD/bitnetc" build "$MODEL" -o "$OUT/po-hooks" >/dev/null
"$BUILD/bitnetc" build "$MODEL" -o "$OUT/po-none" --cflags -DBN_NO_PROFILE >/dev/null
: >"$OUT/po-hooks.txt"
: >"$OUT/po-none.txt"
field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"; }
for r in $(seq "$RUNS"); do
	for v in hooks none; do
		# shellcheck disable=SC2086
		j=$("$OUT/po-$v" --bench --json $BENCH 2>/dev/null)
		echo "$(echo "$j" | field pp_tok_s) $(echo "$j" | field tg_tok_s)" >>"$OUT/po-$v.txt"
	done
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for c in 1 2; do
	h=$(cut -d' ' -f$c "$OUT/po-hooks.txt" | median)
	n=$(cut -d' ' -f$c "$OUT/po-none.txt" | median)
	awk -v h="$h" -v n="$n" -v w="$([ $c = 1 ] && echo prefill || echo decode)" \
		'BEGIN {printf "%s: %.2f tok/s with the hooks, %.2f without: ratio %.4f\n", w, h, n, h / n}'
done
rm -f "$OUT/po-hooks" "$OUT/po-none"
