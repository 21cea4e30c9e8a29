#!/bin/sh
# bench/serve_http.sh - a --server program under load: generated tokens/s over all streams, and
# p50 / p99 of the time to first token (TTFT) and of the inter-token latency (ITL), at 1,
# 2, 4, 8 and 16 concurrent streams (bench/serve_client.c: streamed /v1/completions over
# loopback, greedy, ignore_eos where the server knows it), each level bounded in requests
# and seconds. With ik_llama.cpp's (or llama.cpp's) llama-server given, the same levels
# against it in the same run, as the baseline: on the same GGUF, or on LLAMA_MODEL (the same
# weights in the peer's own format: ik_llama.cpp computes I2_S files wrongly; give it
# IQ2_BN made by its llama-quantize from `bitnetc mkmodel --type f16` of the same seed).
#
#   bench/serve_http.sh                                   # the tiny model (fast, a smoke run)
#   MODEL=2b4t bench/serve_http.sh                        # the 2B-4T shape (~1.2 GB, made once)
#   LLAMA_SERVER=/path/llama-server MODEL=2b4t bench/serve_http.sh
#   LLAMA_SERVER=/path/llama-server LLAMA_MODEL=/path/2b-iq2_bn.gguf MODEL=2b4t bench/serve_http.sh
#
# Knobs (environment): MODEL (tiny, 2b4t, or a GGUF path), STREAMS ("1 2 4 8 16"),
# REQUESTS (per level; default 2 x streams, at least 4), SECONDS (per level, 60),
# MAX_TOKENS (64), THREADS (-t, default: online CPUs), CTX (total context, 8192),
# OUT (tmp/serve-bench), BUILD (build), LLAMA_SERVER, LLAMA_MODEL (its GGUF; default the
# same), LLAMA_ARGS (extra flags for it), LLAMA_OMP_WAIT (its OMP_WAIT_POLICY: unset, the
# default spinning; passive where other jobs share the cores: say which with the figures).
# A shared machine makes timings noisy: compare only the rows of one run.
set -eu
cd "$(dirname "$0")/.."

STREAMS=${STREAMS:-"1 2 4 8 16"}
SECONDS_MAX=${SECONDS:-60}
MAX_TOKENS=${MAX_TOKENS:-64}
THREADS=${THREADS:-$(nproc)}
CTX=${CTX:-8192}
OUT=${OUT:-tmp/serve-bench}
BUILD=${BUILD:-build}
MODEL=${MODEL:-tiny}
mkdir -p "$OUT"
BITNETC=$BUILD/bitnetc
[ -x "$BITNETC" ] || { echo "serve_http.sh: $BITNETC missing: build bitnetc first" >&2; exit 1; }
command -v cc >/dev/null || { echo "serve_http.sh: no cc" >&2; exit 1; }

case "$MODEL" in
tiny)
	GGUF=$OUT/tiny-l3.gguf
	[ -f "$GGUF" ] || "$BITNETC" mkmodel --shape tiny --llama3-vocab --vocab 128256 \
		--seed 1 -o "$GGUF" >&2 ;;
2b4t)
	GGUF=$OUT/2b4t-i2_s.gguf
	if [ ! -f "$GGUF" ]; then
		echo "generating the 2B-4T-shape model (random ternary weights, ~1.2 GB): $GGUF" >&2
		"$BITNETC" mkmodel --shape 2b4t --type i2_s --llama3-vocab --seed 1 -o "$GGUF" >&2
	fi ;;
*) GGUF=$MODEL ;;
esac

cc -std=c11 -O2 -pthread -o "$OUT/serve_client" bench/serve_client.c
PROG=$OUT/$(basename "$GGUF" .gguf)-server
if [ ! -x "$PROG" ] || [ "$BITNETC" -nt "$PROG" ] || [ "$GGUF" -nt "$PROG" ]; then
	echo "building $PROG" >&2
	"$BITNETC" build "$GGUF" --server -o "$PROG" >/dev/null
fi

# start_server LOG CMD...: runs CMD in the background, waits for /health; sets PID, PORT
start_server() {
	log=$1
	shift
	"$@" >"$log" 2>&1 &
	PID=$!
	i=0
	while [ $i -lt 1200 ]; do
		if curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then
			return 0
		fi
		kill -0 "$PID" 2>/dev/null || { echo "serve_http.sh: the server exited:" >&2; cat "$log" >&2; exit 2; }
		sleep 0.25
		i=$((i + 1))
	done
	echo "serve_http.sh: no /health after 300 s" >&2
	kill "$PID"
	exit 2
}

# free_port [OFFSET]: a port nothing answers on (another OFFSET for a second server: the
# first one's port may still be in TIME_WAIT, which a server without SO_REUSEADDR cannot bind)
free_port() {
	p=$(( (($$ * 7919 + ${1:-0}) % 20000) + 20000 ))
	while curl -s "http://127.0.0.1:$p/" >/dev/null 2>&1; do p=$((p + 1)); done
	echo "$p"
}

# run_levels NAME: every level of STREAMS against the server on PORT
run_levels() {
	for n in $STREAMS; do
		req=${REQUESTS:-$((2 * n < 4 ? 4 : 2 * n))}
		printf '%-10s ' "$1"
		"$OUT/serve_client" 127.0.0.1 "$PORT" "$n" "$req" "$SECONDS_MAX" "$MAX_TOKENS"
	done
}

maxs=1
for n in $STREAMS; do [ "$n" -gt "$maxs" ] && maxs=$n; done
echo "model $GGUF, $MAX_TOKENS tokens per request, -t $THREADS, context $CTX over $maxs slots" >&2
echo "(the machine may be shared: compare rows of one run only)" >&2

PORT=$(free_port)
start_server "$OUT/bitnetc.log" "$PROG" --server --port "$PORT" -np "$maxs" -c "$CTX" -t "$THREADS"
run_levels bitnetc
kill -TERM "$PID"
wait "$PID" || true

if [ -n "${LLAMA_SERVER:-}" ]; then
	PORT=$(free_port 1000)
	# its OpenMP threads spin while they wait: fastest on a quiet machine, ~10x slower when
	# other jobs share the cores; LLAMA_OMP_WAIT=passive makes them sleep instead
	# run from $OUT: it writes llama.log into its working directory
	lm=${LLAMA_MODEL:-$GGUF}
	case $lm in /*) ;; *) lm=$(pwd)/$lm ;; esac
	ls=$LLAMA_SERVER
	case $ls in /*) ;; */*) ls=$(pwd)/$ls ;; esac
	# shellcheck disable=SC2086
	start_server "$OUT/llama-server.log" sh -c 'cd "$0" && exec "$@"' "$OUT" \
		env ${LLAMA_OMP_WAIT:+OMP_WAIT_POLICY=$LLAMA_OMP_WAIT} \
		"$ls" -m "$lm" --host 127.0.0.1 \
		--port "$PORT" -np "$maxs" -c "$CTX" -t "$THREADS" ${LLAMA_ARGS:-}
	run_levels llama-srv
	kill -TERM "$PID"
	wait "$PID" || true
fi
