#!/bin/sh
# bench/layout.sh - the ternary weight layouts against each other: the same model built
# with permute_weights.layout=i2s_x16 (the default) and =t5_x16 (5 trits per byte), then
# RUNS runs of each program's `--bench --json`, alternating, and per layout the median
# prefill (pp) and decode (tg) tok/s, the weight bytes a decode step reads (--info's
# weights: the ternary matmuls plus the head) and the t5_x16 / i2s_x16 ratios.
#
# Knobs (environment): MODEL (a GGUF; default the synthetic 2B4T shape with the Llama 3
# vocabulary, generated once into $OUT), PP (128), TG (64), REPS (3), RUNS (5), THREADS
# (2), TARGET (native), EXTRA (more build options, e.g. --pipeline
# examples/pipelines/quantized_head.lua), OUT (bench/out), BUILD (build).
set -eu
cd "$(dirname "$0")/.."
PP=${PP:-128}
TG=${TG:-64}
REPS=${REPS:-3}
RUNS=${RUNS:-5}
THREADS=${THREADS:-2}
TARGET=${TARGET:-native}
EXTRA=${EXTRA:-}
OUT=${OUT:-bench/out}
BUILD=${BUILD:-build}
mkdir -p "$OUT"
BITNETC=$BUILD/bitnetc
MODEL=${MODEL:-$OUT/2b4t-l3.gguf}
[ -f "$MODEL" ] || "$BITNETC" mkmodel --shape 2b4t --type i2_s --llama3-vocab -o "$MODEL" >&2
for l in i2s_x16 t5_x16; do
	[ -n "${REUSE:-}" ] && [ -x "$OUT/layout-$l" ] && continue
	"$BITNETC" build "$MODEL" -o "$OUT/layout-$l" --target "$TARGET" $EXTRA \
		--pass-opt permute_weights.layout=$l >&2
done
RES=$OUT/layout.txt
: > "$RES"
field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"; }
run=0
while [ "$run" -lt "$RUNS" ]; do
	for l in i2s_x16 t5_x16; do
		j=$("$OUT/layout-$l" --bench --json --pp "$PP" --tg "$TG" --reps "$REPS" \
			-t "$THREADS" 2>/dev/null)
		echo "$l $(echo "$j" | field pp_tok_s) $(echo "$j" | field tg_tok_s)" \
		     "$(echo "$j" | field weights_bytes)" >> "$RES"
	done
	run=$((run + 1))
done
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
sel() { awk -v l="$1" -v c="$2" '$1 == l {print $c}' "$RES" | median; }
echo "| layout | pp$PP tok/s | tg$TG tok/s | weight bytes per token |"
echo "|---|---:|---:|---:|"
for l in i2s_x16 t5_x16; do
	echo "| $l | $(sel $l 2) | $(sel $l 3) | $(sel $l 4) |"
done
# the same-run ratios: per run t5 / i2s, then their median
awk '$1 == "i2s_x16" {pp = $2; tg = $3} $1 == "t5_x16" {print $2 / pp, $3 / tg, $4}' "$RES" > "$RES.r"
echo "| t5_x16 / i2s_x16 (median of per-run ratios) | $(cut -d' ' -f1 "$RES.r" | median) | $(cut -d' ' -f2 "$RES.r" | median) | $(awk -v a="$(sel t5_x16 4)" -v b="$(sel i2s_x16 4)" 'BEGIN {printf "%.3f", a / b}') |"
