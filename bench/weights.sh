#!/bin/sh
# bench/weights.sh - decode tokens/s with the weights copied into anonymous huge-page memory
# (the default) against --mmap (the lazy file mapping), each from the program as built (an
# "old" file whose page cache was laid out when it was written) and from a fresh `cp` of
# it; plus start-up time, RSS, and the machine's read bandwidth (bench/membw.c), to say
# what share of the ceiling (bandwidth / weight bytes read per token) decode reaches: the
# probe runs once at the start and again before every run (this kind of VM moves between
# bandwidth regimes minute to minute), and each run is also compared with its own probe.
# Prints a markdown table of medians over RUNS runs of `--bench --json`, interleaved.
#
# Knobs (environment): PROG (a program built earlier from MODEL, used as the old file;
# default: built here first), TG (64), REPS (3), RUNS (3), THREADS (2), MODEL (a GGUF; default the
# synthetic 2B4T shape with the Llama 3 vocabulary, generated once into $OUT), OUT
# (bench/out), BUILD (build).
set -eu
cd "$(dirname "$0")/.."
TG=${TG:-64}
REPS=${REPS:-3}
RUNS=${RUNS:-3}
THREADS=${THREADS:-2}
OUT=${OUT:-bench/out}
BUILD=${BUILD:-build}
mkdir -p "$OUT"
BITNETC=$BUILD/bitnetc
MODEL=${MODEL:-$OUT/2b4t-l3.gguf}
[ -f "$MODEL" ] || "$BITNETC" mkmodel --shape 2b4t --type i2_s --llama3-vocab -o "$MODEL" >&2
OLD=${PROG:-$OUT/weights-old}
FRESH=$OUT/weights-fresh
[ -n "${PROG:-}" ] || "$BITNETC" build "$MODEL" -o "$OLD" >&2
${CC:-cc} -O3 -march=native -pthread -o "$OUT/membw" bench/membw.c
BW=$("$OUT/membw" "$THREADS")
cp "$OLD" "$FRESH"

# one --bench --json line per run: prog mode tg_tok_s load_ms rss_mib huge_pages peak_rss_mib
RES=$OUT/weights.txt
: > "$RES"
field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"; }
run=0
while [ "$run" -lt "$RUNS" ]; do
	for prog in old fresh; do
		for mode in copy mmap; do
			p=$OLD
			[ "$prog" = fresh ] && p=$FRESH
			flag=--no-mmap
			[ "$mode" = mmap ] && flag=--mmap
			bw=$("$OUT/membw" "$THREADS") # this run's own probe: the bandwidth moves
			j=$("$p" $flag --bench --json --pp 0 --tg "$TG" --reps "$REPS" -t "$THREADS" 2>/dev/null)
			echo "$prog $mode $(echo "$j" | field tg_tok_s) $(echo "$j" | field load_ms)" \
			     "$(echo "$j" | field rss_mib) $(echo "$j" | field weights_huge_pages)" \
			     "$(echo "$j" | field peak_rss_mib) $bw" >> "$RES"
		done
	done
	run=$((run + 1))
done
WB=$("$OLD" --bench --json --pp 0 --tg 1 --reps 1 2>/dev/null | field weights_bytes)
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
CEIL=$(awk -v bw="$BW" -v wb="$WB" 'BEGIN {printf "%.1f", bw * 1e9 / wb}')
RANGE=$(awk '{print $8}' "$RES" | sort -n | awk 'NR == 1 {lo = $1} {hi = $1} END {print lo "-" hi}')
echo "read bandwidth: $BW GB/s ($THREADS threads) at the start, $RANGE GB/s before the runs;" \
     "weights $WB bytes per token: ceiling $CEIL tok/s at the start"
echo
echo "| weights | program file | tg$TG tok/s (median) | % of the start's ceiling | % of its run's ceiling (median) | ready in ms | RSS MiB ready | peak RSS MiB | huge pages |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
for mode in copy mmap; do
	for prog in old fresh; do
		sel() { awk -v p="$prog" -v m="$mode" -v c="$1" '$1 == p && $2 == m {print $c}' "$RES" | median; }
		tg=$(sel 3)
		pct=$(awk -v t="$tg" -v c="$CEIL" 'BEGIN {printf "%.0f%%", 100 * t / c}')
		# each run against the ceiling its own probe gave just before it
		own=$(awk -v p="$prog" -v m="$mode" -v wb="$WB" '$1 == p && $2 == m && $8 > 0 {print 100 * $3 / ($8 * 1e9 / wb)}' "$RES" |
		      median | awk '{printf "%.0f%%", $1}')
		label=copied
		[ "$mode" = mmap ] && label="--mmap"
		echo "| $label | $prog | $tg | $pct | $own | $(sel 4) | $(sel 5) | $(sel 7) | $(sel 6) |"
	done
done
