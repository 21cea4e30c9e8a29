#!/bin/sh
# bench/build_time.sh - wall time of `bitnetc build` for the default pipeline and every
# example pipeline (examples/pipelines/*.lua): a baseline bitnetc (BASE, e.g. one built from
# an older commit) against this one (NEW) with a cold cache of the runtime's objects (an
# empty XDG_CACHE_HOME each run) and a warm one. Runs interleaved; prints a markdown table
# of medians over RUNS runs (and the stage times of NEW's last warm run with -v to stderr).
#
# Knobs (environment): BASE (default: NEW, which makes the first column a plain cold build),
# NEW (build/bitnetc), RUNS (3), MODEL (a GGUF; default the synthetic 2B4T shape with the
# Llama 3 vocabulary, generated once into $OUT), OUT (bench/out), JOBS (-j of NEW; default
# its own).
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
NEW=${NEW:-build/bitnetc}
BASE=${BASE:-$NEW}
RUNS=${RUNS:-3}
mkdir -p "$OUT"
MODEL=${MODEL:-$OUT/2b4t-l3.gguf}
[ -f "$MODEL" ] || "$NEW" mkmodel --shape 2b4t --type i2_s --llama3-vocab -o "$MODEL" >&2
J=${JOBS:+-j $JOBS}
now() { date +%s.%N; }
# one build; prints its seconds
timed() {
	t0=$(now)
	"$@" >/dev/null 2>"$OUT/build.err" || { cat "$OUT/build.err" >&2; exit 1; }
	awk -v a="$(now)" -v b="$t0" 'BEGIN {print a - b}'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "| pipeline | baseline | cold cache | warm cache |"
echo "|---|---|---|---|"
for p in default examples/pipelines/*.lua; do
	pl=""
	[ "$p" = default ] || pl="--pipeline $p"
	warm="$OUT/bt-cache-warm"
	rm -rf "$warm"
	XDG_CACHE_HOME="$warm" "$NEW" build "$MODEL" -o "$OUT/bt-prog" $pl $J >/dev/null
	: >"$OUT/bt-b"; : >"$OUT/bt-c"; : >"$OUT/bt-w"
	for r in $(seq "$RUNS"); do
		timed "$BASE" build "$MODEL" -o "$OUT/bt-prog" $pl >>"$OUT/bt-b"
		rm -rf "$OUT/bt-cache-cold"
		timed env XDG_CACHE_HOME="$OUT/bt-cache-cold" "$NEW" build "$MODEL" \
			-o "$OUT/bt-prog" $pl $J >>"$OUT/bt-c"
		timed env XDG_CACHE_HOME="$warm" "$NEW" build "$MODEL" -o "$OUT/bt-prog" $pl $J \
			>>"$OUT/bt-w"
	done
	printf "| %s | %.1f s | %.1f s | %.1f s |\n" "$(basename "$p")" "$(median <"$OUT/bt-b")" \
		"$(median <"$OUT/bt-c")" "$(median <"$OUT/bt-w")"
done
rm -rf "$OUT/bt-cache-cold" "$OUT/bt-prog"
XDG_CACHE_HOME="$warm" "$NEW" build "$MODEL" -o "$OUT/bt-prog" $J -v 2>&1 |
	grep -E '^\[|^  [a-z_.]+ +[0-9.]+ (s|ms)$|cache' >&2 || true
rm -rf "$warm" "$OUT/bt-prog"
