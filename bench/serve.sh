#!/bin/sh
# bench/serve.sh - the serving engine's throughput (bench/serve_engine.c) on the tiny golden
# model and on the synthetic 2B4T shape: aggregate generated tokens/s of 1..16 concurrent
# greedy requests and the cost of one decode step of k rows. Knobs (environment): TOKENS
# (64), REPS (3), THREADS (0: one per CPU), OUT (bench/out), BUILD (build), MODELS (both:
# "tiny 2b4t").
set -eu
cd "$(dirname "$0")/.."
TOKENS=${TOKENS:-64}
REPS=${REPS:-3}
THREADS=${THREADS:-0}
OUT=${OUT:-bench/out}
BUILD=${BUILD:-build}
MODELS=${MODELS:-"tiny 2b4t"}
mkdir -p "$OUT"
if [ ! -x "$BUILD/bitnetc" ]; then
	cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build "$BUILD" -j"$(nproc)" --target bitnetc >/dev/null
fi
BITNETC=$(pwd)/$BUILD/bitnetc
ROOT=$(pwd)
for name in $MODELS; do
	case $name in
	tiny) gguf=tests/data/golden/models/tiny-b158-i2_s.gguf ;;
	2b4t)
		gguf=$OUT/2b4t-i2_s.gguf
		if [ ! -f "$gguf" ]; then
			echo "generating the 2B4T-shape model (random ternary weights, ~1.1 GiB): $gguf" >&2
			"$BITNETC" mkmodel --shape 2b4t --type i2_s --seed 1 -o "$gguf" >&2
		fi
		;;
	*) echo "unknown model $name (tiny, 2b4t)" >&2; exit 1 ;;
	esac
	src=$OUT/serve_$name
	rm -rf "$src"
	"$BITNETC" build "$gguf" -o "$OUT/serve_$name.prog" --emit-c "$src" \
		--weights-file "$OUT/serve_$name.weights" >&2
	(cd "$src" && cc -std=c11 -O2 -ffp-contract=off -D_GNU_SOURCE -march=native -c model.c -o model.o &&
		cc -std=c11 -O2 -ffp-contract=off -D_GNU_SOURCE -march=native -I. -o "../serve_engine_$name" \
			"$ROOT/bench/serve_engine.c" model.o $(ls *.c | grep -v -e '^main.c$' -e '^model.c$') \
			-lm -lpthread)
	echo "## $name"
	"$OUT/serve_engine_$name" "$OUT/serve_$name.weights" "$TOKENS" "$REPS" "$THREADS"
	echo
done
