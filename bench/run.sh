#!/bin/sh
# bench/run.sh - prefill (pp) and decode (tg) tokens/s of bitnetc's CPU kernels on the 2B4T
# shape, against the portable C kernels as the in-run baseline, with 1 and 2 threads;
# optionally against llama.cpp-family builds (bitnet.cpp, ik_llama.cpp) made outside this
# repository. Prints a markdown table of medians.
#
#   bench/run.sh                        # bitnetc native vs portable C
#   BITNET_CPP=/path/llama-bench BITNET_CPP_MODEL=/path/model-i2_s.gguf bench/run.sh
#   IK_LLAMA=/path/llama-bench IK_LLAMA_MODEL=/path/model-iq2_bn.gguf bench/run.sh
#   PORTABLE_ROWS=1 bench/run.sh        # + portable C on i2s_x16: LUT (the default there)
#                                       #   and multiply-add kernels
#
# Where the page cache put a mapped file decides much of decode speed (the same program runs
# 40% faster from a fresh copy of itself on some machines): every program and peer model is
# copied afresh just before it is measured (FRESH=0: not), so all are placed alike. The
# machine's read bandwidth (bench/membw.c, 2 threads) gives decode's ceiling (bandwidth /
# bytes read per token); the table shows each system's decode as % of it.
#
# Knobs (environment): PP (128), TG (128), REPS (5), THREADS ("1 2"), TARGET (native),
# BASE_TG (32: the portable baseline decodes fewer tokens, it is ~3x slower), BASE_REPS (3),
# MODEL (a GGUF; default: the synthetic 2B4T shape, generated once into $OUT),
# OUT (bench/out), BUILD (build), FRESH (1), CC (cc, for the probe).
set -eu
cd "$(dirname "$0")/.."

PP=${PP:-128}
TG=${TG:-128}
REPS=${REPS:-5}
THREADS=${THREADS:-"1 2"}
TARGET=${TARGET:-native}
BASE_TG=${BASE_TG:-32}
BASE_REPS=${BASE_REPS:-3}
OUT=${OUT:-bench/out}
BUILD=${BUILD:-build}
mkdir -p "$OUT"

if [ ! -x "$BUILD/bitnetc" ]; then
	cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build "$BUILD" -j"$(nproc)" >/dev/null
fi
BITNETC=$BUILD/bitnetc

MODEL=${MODEL:-$OUT/2b4t-i2_s.gguf}
if [ ! -f "$MODEL" ]; then
	echo "generating the 2B4T-shape model (random ternary weights, ~1.1 GiB): $MODEL" >&2
	"$BITNETC" mkmodel --shape 2b4t --type i2_s --seed 1 -o "$MODEL" >&2
fi

echo "building the programs" >&2
"$BITNETC" build "$MODEL" -o "$OUT/fast" --target "$TARGET" >&2
# the portable C kernels on the GGUF layout: what bitnetc had before the SIMD families
"$BITNETC" build "$MODEL" -o "$OUT/base" --target cpu-generic \
	--pass-opt permute_weights.layout=gguf >&2
if [ -n "${PORTABLE_ROWS:-}" ]; then
	"$BITNETC" build "$MODEL" -o "$OUT/gen-lut" --target cpu-generic \
		--pass-opt permute_weights.layout=i2s_x16 --pass-opt lut_specialize.mode=lut >&2
	"$BITNETC" build "$MODEL" -o "$OUT/gen-mad" --target cpu-generic \
		--pass-opt permute_weights.layout=i2s_x16 --pass-opt lut_specialize.mode=mad >&2
fi

FRESH=${FRESH:-1}
# fresh FILE: FILE, or with FRESH=1 a copy of it made now (beside it, FILE.fresh)
fresh() {
	if [ "$FRESH" = 1 ]; then
		rm -f "$1.fresh"
		cp "$1" "$1.fresh"
		echo "$1.fresh" >>"$OUT/fresh.list"
		echo "$1.fresh"
	else
		echo "$1"
	fi
}

# the read-bandwidth ceiling
${CC:-cc} -O3 -march=native -pthread -o "$OUT/membw" bench/membw.c
bw=$("$OUT/membw" 2)
# pct TOK_S BYTES: decode tok/s as % of bw / bytes per token
pct() {
	awk -v r="$1" -v b="$2" -v bw="$bw" 'BEGIN { if (b > 0 && r > 0) printf "%.0f%%", 100 * r * b / (bw * 1e9); else printf "-" }'
}

# json FILE KEY: a number from the program's --bench --json line
json() {
	sed -n "s/.*\"$2\": \([0-9.]*\).*/\1/p" "$1"
}

# ratio A B: A / B with two decimals (awk: no bc on a bare Debian)
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'
}

# llama-bench's markdown table (its CSV quotes fields with commas in them): the test
# (ppN / tgN) and t/s, mean +- sd, columns; we report the mean
llama() { # BIN MODEL THREADS -> "pp tg"
	"$1" -m "$(fresh "$2")" -p "$PP" -n "$TG" -t "$3" -r "$REPS" -o md 2>/dev/null |
		awk -F'|' '/\| *(pp|tg)[0-9]+ *\|/ { n = NF - 1; t = $(n - 1); v = $n; gsub(/ /, "", t)
			split(v, a, "±"); gsub(/ /, "", a[1]); if (t ~ /^pp/) pp = a[1]; else tg = a[1] }
			END { printf "%s %s\n", pp == "" ? "-" : pp, tg == "" ? "-" : tg }'
}

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
wbytes=$(stat -c %s "$MODEL")
echo
echo "model: $(basename "$MODEL") ($((wbytes / 1048576)) MiB), CPU: $cpu, $(date -u +%Y-%m-%d)"
echo "pp$PP / tg$TG, medians of $REPS runs (baseline: tg$BASE_TG, $BASE_REPS runs)"
echo "read bandwidth (bench/membw.c, 2 threads): $bw GB/s; each file copied afresh before its run: $([ "$FRESH" = 1 ] && echo yes || echo no)"
echo
echo "| system | threads | pp$PP tok/s | tg tok/s | pp vs portable | tg vs portable | decode GB/s | tg % of ceiling |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
vs=""
for t in $THREADS; do
	"$(fresh "$OUT/base")" --bench --pp "$PP" --tg "$BASE_TG" --reps "$BASE_REPS" -t "$t" --json >"$OUT/base-$t.json"
	"$(fresh "$OUT/fast")" --bench --pp "$PP" --tg "$TG" --reps "$REPS" -t "$t" --json >"$OUT/fast-$t.json"
	bpp=$(json "$OUT/base-$t.json" pp_tok_s)
	btg=$(json "$OUT/base-$t.json" tg_tok_s)
	fpp=$(json "$OUT/fast-$t.json" pp_tok_s)
	ftg=$(json "$OUT/fast-$t.json" tg_tok_s)
	wb=$(json "$OUT/fast-$t.json" weights_bytes)
	# every decode step reads all the weights once (the payload less the tokenizer)
	gbs=$(awk -v w="$wb" -v r="$ftg" 'BEGIN { printf "%.1f", w * r / 1e9 }')
	echo "| bitnetc $TARGET | $t | $fpp | $ftg | $(ratio "$fpp" "$bpp")x | $(ratio "$ftg" "$btg")x | $gbs | $(pct "$ftg" "$wb") |"
	echo "| bitnetc portable C (baseline) | $t | $bpp | $btg | 1.00x | 1.00x | | $(pct "$btg" "$wb") |"
	if [ -n "${PORTABLE_ROWS:-}" ]; then
		for v in lut mad; do
			"$(fresh "$OUT/gen-$v")" --bench --pp "$PP" --tg "$BASE_TG" --reps "$BASE_REPS" -t "$t" \
				--json >"$OUT/gen-$v-$t.json"
			gpp=$(json "$OUT/gen-$v-$t.json" pp_tok_s)
			gtg=$(json "$OUT/gen-$v-$t.json" tg_tok_s)
			echo "| bitnetc portable C, i2s_x16, $v | $t | $gpp | $gtg | $(ratio "$gpp" "$bpp")x | $(ratio "$gtg" "$btg")x | | $(pct "$gtg" "$wb") |"
		done
	fi
	if [ -n "${BITNET_CPP:-}" ]; then
		set -- $(llama "$BITNET_CPP" "${BITNET_CPP_MODEL:?set BITNET_CPP_MODEL}" "$t")
		echo "| bitnet.cpp | $t | $1 | $2 | $(ratio "$1" "$bpp")x | $(ratio "$2" "$btg")x | | $(pct "$2" "$(stat -c %s "$BITNET_CPP_MODEL")") |"
		vs="$vs; $t threads: bitnetc/bitnet.cpp pp $(ratio "$fpp" "$1")x tg $(ratio "$ftg" "$2")x"
	fi
	if [ -n "${IK_LLAMA:-}" ]; then
		set -- $(llama "$IK_LLAMA" "${IK_LLAMA_MODEL:?set IK_LLAMA_MODEL}" "$t")
		echo "| ik_llama.cpp | $t | $1 | $2 | $(ratio "$1" "$bpp")x | $(ratio "$2" "$btg")x | | $(pct "$2" "$(stat -c %s "$IK_LLAMA_MODEL")") |"
		vs="$vs; $t threads: bitnetc/ik_llama.cpp pp $(ratio "$fpp" "$1")x tg $(ratio "$ftg" "$2")x"
	fi
done
if [ -n "$vs" ]; then
	echo
	echo "${vs#; }" | tr ';' '\n' | sed 's/^ //'
fi

# peak resident memory while decoding (GNU time, where installed: Debian package "time")
if [ -x /usr/bin/time ]; then
	rss() { # CMD... -> GiB
		/usr/bin/time -f "%M" -o "$OUT/rss.txt" "$@" >/dev/null 2>&1 &&
			awk '{ printf "%.2f", $1 / 1048576 }' "$OUT/rss.txt"
	}
	echo
	line="peak RSS decoding tg$TG, 2 threads: bitnetc $TARGET $(rss "$OUT/fast" --bench --pp 16 --tg "$TG" --reps 1 -t 2) GiB"
	if [ -n "${BITNET_CPP:-}" ]; then
		line="$line, bitnet.cpp $(rss "$BITNET_CPP" -m "$BITNET_CPP_MODEL" -p 16 -n "$TG" -t 2 -r 1) GiB"
	fi
	if [ -n "${IK_LLAMA:-}" ]; then
		line="$line, ik_llama.cpp $(rss "$IK_LLAMA" -m "$IK_LLAMA_MODEL" -p 16 -n "$TG" -t 2 -r 1) GiB"
	fi
	echo "$line"
fi
# the copies this run made
if [ -f "$OUT/fresh.list" ]; then
	sort -u "$OUT/fresh.list" | while read -r f; do rm -f "$f"; done
	rm -f "$OUT/fresh.list"
fi
