#!/usr/bin/env bash
# gpu-check.sh - the one-shot check of the CUDA backend on a machine with an NVIDIA GPU:
# (a) the driver and GPU; (b) every golden model built for the GPU against the reference
# interpreter (`bitnetc run`, and `run --step` for the program's -ub 1): max relative
# difference per logits row and the greedy tokens, for each prompt of prompts.tsv;
# (c) the 2B-4T shape (a synthetic model) built for the GPU and benchmarked (pp512, tg128);
# (d) a profiled decode run of it ($BITNETC_CUDA_PROFILE=1): per-kernel mean time and the
# GB/s of the ternary matmuls and the head. Prints tables; writes JSON to
# $GPU_CHECK_JSON (default bench/gpu-check.json). Exit 0 when every check passed.
#
# Usage: tools/gpu-check.sh [BITNETC]     (run from anywhere; works in the repository root)
#   BITNETC (or $BITNETC): a bitnetc to use, default build-portable/bitnetc-portable, made
#   on a machine with our packages by:
#     cmake -S . -B build-portable -DBITNETC_PORTABLE=ON -DCMAKE_BUILD_TYPE=Release
#     cmake --build build-portable --target bitnetc
#   It needs only glibc (LLVM's NVPTX backend and Lua are linked in, 33 MiB). The GPU
#   machine needs the NVIDIA driver, a C compiler (gcc or $CC), python3, gzip; ptxas
#   (/usr/local/cuda/bin) is used when present (a cubin in the program), else the driver JITs.
# Knobs: GPU_CHECK_SKIP_2B=1 skips (c) and (d), which then profile the first golden model;
#   GPU_CHECK_FAKE=1 runs without a GPU: the programs get --host-kernels and run on the
#   fake driver of tests/simt ($BITNETC_LIBCUDA must name build/tests/libbn_fake_cuda.so,
#   and BITNETC must be a full build: build/bitnetc); GPU_CHECK_TARGET (default cuda, the
#   GPU found at build time; cuda-sm90 with the fake); GPU_CHECK_TOL (default 1e-4);
#   GPU_CHECK_MODELS: the golden models to check (names, default all);
#   GPU_CHECK_OUT: a folder that also gets gpu-check.log and the JSON; GPU_CHECK_WORK: the
#   scratch folder (default a new one under /tmp, about 2.5 GiB with the 2B-4T model).
#
# On a GPU machine that gets a copy of the working tree: copy build-portable/bitnetc-portable
# (built as above) along with it (about 47 MiB in all) and run, with OUT a folder to collect
# the results in:
#   GPU_CHECK_OUT=$OUT bash tools/gpu-check.sh build-portable/bitnetc-portable
# Expected: a few minutes on one H100 (most of it writing and building the 1.1 GiB model;
# each step has its own timeout, 480 s in all is plenty); gpu-check.log and gpu-check.json
# go to $OUT.
# With time short, GPU_CHECK_SKIP_2B=1 first runs the golden part alone.
#
# Dry run here, without a GPU (about a minute; the 2B-4T part skipped):
#   BITNETC_LIBCUDA=$PWD/build/tests/libbn_fake_cuda.so GPU_CHECK_FAKE=1 GPU_CHECK_SKIP_2B=1 \
#   GPU_CHECK_JSON=/tmp/gpu-check.json tools/gpu-check.sh build/bitnetc
set -u
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD

BITNETC=${1:-${BITNETC:-build-portable/bitnetc-portable}}
case "$BITNETC" in /*) ;; *) BITNETC=$ROOT/$BITNETC ;; esac
FAKE=${GPU_CHECK_FAKE:-0}
SKIP_2B=${GPU_CHECK_SKIP_2B:-0}
TOL=${GPU_CHECK_TOL:-1e-4}
JSON=${GPU_CHECK_JSON:-$ROOT/bench/gpu-check.json}
OUTDIR=${GPU_CHECK_OUT:-}
if [ "$FAKE" = 1 ]; then TARGET=${GPU_CHECK_TARGET:-cuda-sm90}; else TARGET=${GPU_CHECK_TARGET:-cuda}; fi
CC=${CC:-cc}
command -v "$CC" >/dev/null 2>&1 || CC=gcc

if [ -n "$OUTDIR" ]; then
	mkdir -p "$OUTDIR" || exit 2
	exec > >(tee "$OUTDIR/gpu-check.log") 2>&1
	tee_pid=$!
fi
WORK=${GPU_CHECK_WORK:-$(mktemp -d /tmp/gpu-check.XXXXXX)}
mkdir -p "$WORK" || exit 2
RES=$WORK/results.jsonl
: >"$RES"
fails=0
T0=$(date +%s)

say() { printf '%s\n' "$*"; }
fail() { say "FAIL: $*"; fails=$((fails + 1)); }
# record KIND JSON-OBJECT-BODY: one line of results for the final JSON
record() { printf '{"kind": "%s", %s}\n' "$1" "$2" >>"$RES"; }
elapsed() { echo $(($(date +%s) - T0)); }

for tool in python3 gzip timeout "$CC"; do
	command -v "$tool" >/dev/null 2>&1 || { say "gpu-check: $tool is missing"; exit 2; }
done
[ -x "$BITNETC" ] || { say "gpu-check: no bitnetc at $BITNETC (build it: see the top of $0)"; exit 2; }

# The Python helpers: compare logits, read bench JSON, the profile table, the final JSON.
PY=$WORK/gc.py
cat >"$PY" <<'EOF'
import json, math, re, struct, sys

def floats(path):
    with open(path, 'rb') as f:
        b = f.read()
    return struct.unpack('<%df' % (len(b) // 4), b)

def compare(ref, got, rows, ids_ref, ids_got, tol):
    a, b = floats(ref), floats(got)
    out = {"rows": rows, "ok": True}
    if rows <= 0 or len(a) != len(b) or len(a) % rows:
        out.update(ok=False, why="logits sizes %d and %d floats for %d rows" % (len(a), len(b), rows))
        return out
    nv = len(a) // rows
    worst, worst_row = 0.0, -1
    for r in range(rows):
        ra, rb = a[r * nv:(r + 1) * nv], b[r * nv:(r + 1) * nv]
        if not all(map(math.isfinite, rb)):
            out.update(ok=False, why="row %d is not finite" % r)
            return out
        scale = max(max(abs(x) for x in ra), 1e-30)
        d = max(abs(x - y) for x, y in zip(ra, rb)) / scale
        if d > worst:
            worst, worst_row = d, r
    t_ref, t_got = open(ids_ref).read().split(), open(ids_got).read().split()
    out.update(n_vocab=nv, max_rel=worst, worst_row=worst_row, tokens_equal=t_ref == t_got)
    if worst > tol:
        out.update(ok=False, why="row %d differs by %.3g relative (tolerance %g)" % (worst_row, worst, tol))
    elif t_ref != t_got:
        first = next((i for i, (x, y) in enumerate(zip(t_ref, t_got)) if x != y), min(len(t_ref), len(t_got)))
        out.update(ok=False, why="greedy tokens differ from generated token %d" % first)
    return out

# Profile table lines: "name calls mean_us total_ms share%"; several tables are summed.
def profile(path):
    k = {}
    for line in open(path, errors='replace'):
        m = re.match(r'^(\S+)\s+(\d+)\s+([0-9.]+)\s+([0-9.]+)\s+[0-9.]+%$', line.strip())
        if m and m.group(1) != 'kernel':
            name, calls, total = m.group(1), int(m.group(2)), float(m.group(4)) * 1e3
            c, t = k.get(name, (0, 0.0))
            k[name] = (c + calls, t + total)
    return k

# Bytes a matmul kernel moves once per call for one token: weights + activations in + out.
def matmul_bytes(name):
    m = re.match(r'^tmm_(i2s|tq1|tq2|tq1_0|tq2_0)_k(\d+)_n(\d+)', name)
    if m:
        K, N = int(m.group(2)), int(m.group(3))
        wb = {'i2s': K * N // 4, 'tq2': K * N // 256 * 66, 'tq2_0': K * N // 256 * 66,
              'tq1': K * N // 256 * 54, 'tq1_0': K * N // 256 * 54}[m.group(1)]
        return 'ternary %dx%d' % (K, N), wb + K + 4 * N
    m = re.match(r'^mm_(f16|bf16|f32)_k(\d+)_v(\d+)', name)
    if m:
        K, V = int(m.group(2)), int(m.group(3))
        es = 4 if m.group(1) == 'f32' else 2
        return 'head %s %dx%d' % (m.group(1), K, V), K * V * es + 4 * K + 4 * V
    return None, 0

def prof_report(path, out_json):
    k = profile(path)
    if not k:
        print("no profile table in %s" % path)
        json.dump({"kernels": [], "matmuls": []}, open(out_json, 'w'))
        return 1
    rows = sorted(k.items(), key=lambda kv: -kv[1][1])
    total = sum(t for _, (c, t) in rows)
    floor = min(t / c for _, (c, t) in rows if c)
    print("%-48s %8s %10s %10s %6s" % ("kernel", "calls", "mean_us", "total_ms", "share"))
    for name, (c, t) in rows[:25]:
        print("%-48s %8d %10.2f %10.3f %5.1f%%" % (name, c, t / c, t / 1e3, 100 * t / total))
    if len(rows) > 25:
        print("... %d more kernels" % (len(rows) - 25))
    print("\nmatmul bandwidth (per call: weights + activations; one token per call for _gemv);")
    print("mean_us includes launch + synchronize; 'net' subtracts the fastest kernel's mean (%.2f us)" % floor)
    print("%-36s %-24s %8s %10s %10s %9s %9s" % ("kernel", "shape", "calls", "MiB/call", "mean_us", "GB/s", "GB/s net"))
    mm = []
    for name, (c, t) in sorted(k.items()):
        shape, nb = matmul_bytes(name)
        if not shape:
            continue
        mean = t / c
        gbs = nb / (mean * 1e3)
        net = nb / ((mean - floor) * 1e3) if mean > floor else float('inf')
        print("%-36s %-24s %8d %10.2f %10.2f %9.1f %9.1f" % (name, shape, c, nb / 2**20, mean, gbs, net))
        mm.append({"kernel": name, "shape": shape, "calls": c, "bytes": nb, "mean_us": round(mean, 3),
                   "gb_s": round(gbs, 2), "gb_s_net": round(net, 2) if math.isfinite(net) else None})
    json.dump({"launch_floor_us": round(floor, 3),
               "kernels": [{"kernel": n, "calls": c, "mean_us": round(t / c, 3), "total_ms": round(t / 1e3, 3)}
                           for n, (c, t) in rows], "matmuls": mm}, open(out_json, 'w'))
    return 0

def main():
    cmd = sys.argv[1]
    if cmd == 'compare':
        ref, got, rows, ids_ref, ids_got, tol = sys.argv[2:8]
        r = compare(ref, got, int(rows), ids_ref, ids_got, float(tol))
        print(json.dumps(r))
        return 0 if r["ok"] else 1
    if cmd == 'bench':
        # the program's --bench --json line (the last line that parses)
        d = None
        for line in open(sys.argv[2]):
            line = line.strip()
            if line.startswith('{'):
                try:
                    d = json.loads(line)
                except ValueError:
                    pass
        if d is None:
            return 1
        print(json.dumps(d))
        return 0
    if cmd == 'profile':
        return prof_report(sys.argv[2], sys.argv[3])
    if cmd == 'final':
        res, out = sys.argv[2], sys.argv[3]
        doc = {"golden": [], "bench": None, "profile": None}
        for line in open(res):
            r = json.loads(line)
            kind = r.pop("kind")
            if kind == 'golden':
                doc["golden"].append(r)
            elif kind == 'profile':
                doc["profile"] = json.load(open(r["file"]))
                doc["profile"]["model"] = r["model"]
            else:
                doc[kind] = r
        json.dump(doc, open(out, 'w'), indent=1)
        return 0
    return 2

sys.exit(main())
EOF

# ---- (a) the driver and the GPU ---------------------------------------------------
mode_note=""
[ "$FAKE" = 1 ] && mode_note=", fake driver, host kernels"
say "== gpu-check: $(date -u '+%F %T UTC'), bitnetc $BITNETC, target $TARGET$mode_note"
"$BITNETC" version || { fail "bitnetc version"; exit 2; }
if [ "$FAKE" = 1 ]; then
	[ -n "${BITNETC_LIBCUDA:-}" ] && [ -r "$BITNETC_LIBCUDA" ] ||
		{ say "gpu-check: GPU_CHECK_FAKE=1 needs BITNETC_LIBCUDA=.../libbn_fake_cuda.so"; exit 2; }
	gpu="fake driver $BITNETC_LIBCUDA"
	say "GPU: none (the fake driver: $BITNETC_LIBCUDA)"
	record gpu "\"name\": \"fake\", \"driver\": \"$BITNETC_LIBCUDA\""
else
	if ! command -v nvidia-smi >/dev/null 2>&1; then
		fail "nvidia-smi not found: no NVIDIA driver on this machine"
		exit 2
	fi
	q=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)
	if [ -z "$q" ] || ! nvidia-smi -L >/dev/null 2>&1; then
		fail "nvidia-smi: $q"
		exit 2
	fi
	gpu=${q%%,*}
	say "GPU: $q"
	nvidia-smi -L
	cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1)
	say "compute capability: ${cc:-?}; libcuda: $(ldconfig -p 2>/dev/null | grep -m1 'libcuda.so.1' | sed 's/.*=> //')"
	record gpu "\"name\": \"$gpu\", \"query\": \"$(printf '%s' "$q" | tr -d '"')\", \"cc\": \"${cc:-}\""
fi
"$BITNETC" targets | grep -A1 '^cuda' || true

# build GGUF NAME [ARGS...]: the program $WORK/NAME (+ its kernels for the fake driver);
# echoes the environment prefix that runs it.
build() {
	local gguf=$1 name=$2
	shift 2
	local dir=$WORK/$name.src
	rm -rf "$dir"
	local extra=()
	[ "$FAKE" = 1 ] && extra=(--host-kernels)
	if ! timeout 300 "$BITNETC" build "$gguf" --target "$TARGET" --emit-c "$dir" -o "$WORK/$name" \
		"${extra[@]}" "$@" >"$WORK/$name.build.log" 2>&1; then
		cat "$WORK/$name.build.log" >&2
		return 1
	fi
	if [ "$FAKE" = 1 ] && ! "$CC" -shared -o "$dir/kernels.so" "$dir/model_host.o" >>"$WORK/$name.build.log" 2>&1; then
		cat "$WORK/$name.build.log" >&2
		return 1
	fi
	grep -E '^\[[345]/5\]' "$WORK/$name.build.log" | sed 's/^/    /' >&2
	return 0
}
# env_for NAME: the environment the program runs in (the fake's kernels when faked)
env_for() {
	if [ "$FAKE" = 1 ]; then
		printf 'BN_FAKE_CUDA_KERNELS=%s' "$WORK/$1.src/kernels.so"
	else
		printf 'GPU_CHECK=1'
	fi
}

# ---- (b) the golden models against the interpreter --------------------------------
say ""
say "== golden models: $TARGET program vs the interpreter (bitnetc run), tolerance $TOL relative per row"
GEN=16
declare -a table=()
first_m="" first_env=""
for gguf in "$ROOT"/tests/data/golden/models/*.gguf; do
	m=$(basename "$gguf" .gguf)
	case " ${GPU_CHECK_MODELS:-$m} " in *" $m "*) ;; *) continue ;; esac
	say "-- $m"
	if ! build "$gguf" "g-$m"; then
		fail "$m: bitnetc build --target $TARGET"
		table+=("$(printf '%-22s %-4s %-6s %6s %12s %-7s %s' "$m" - - - - FAIL 'build failed')")
		record golden "\"model\": \"$m\", \"ok\": false, \"why\": \"build failed\""
		continue
	fi
	env=$(env_for "g-$m")
	[ -z "$first_m" ] && first_env=$env first_m=$m
	while IFS=$'\t' read -r p toks; do
		[ "$p" = name ] && continue
		n=$(($(tr -cd , <<<"$toks" | wc -c) + 1))
		for mode in batch step; do
			# step: one token per call in both (their numerics differ from a batch's, as
			# the reference's do: tests/data/golden has both)
			ub=() step=()
			[ "$mode" = step ] && ub=(-ub 1) step=(--step)
			base=$WORK/g-$m.$p.$mode
			if ! timeout 120 "$BITNETC" run "$gguf" --tokens "$toks" -n $GEN --ignore-eos --attn-f64 "${step[@]}" \
				--logits-out "$base.ref.f32" >"$base.ref.ids" 2>"$base.ref.log"; then
				fail "$m $p: bitnetc run: $(tail -1 "$base.ref.log")"
				continue
			fi
			if ! env $env timeout 120 "$WORK/g-$m" --tokens "$toks" -n $GEN --temp 0 --ignore-eos \
				"${ub[@]}" --logits-out "$base.f32" >"$base.ids" 2>"$base.log"; then
				fail "$m $p $mode: the program failed: $(tail -1 "$base.log")"
				table+=("$(printf '%-22s %-4s %-6s %6s %12s %-7s %s' "$m" "$p" "$mode" - - FAIL 'program failed')")
				record golden "\"model\": \"$m\", \"prompt\": \"$p\", \"mode\": \"$mode\", \"ok\": false, \"why\": \"program failed\""
				continue
			fi
			r=$(python3 "$PY" compare "$base.ref.f32" "$base.f32" $((n + GEN)) "$base.ref.ids" "$base.ids" "$TOL")
			ok=$?
			rel=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.3g" % d.get("max_rel", float("nan")), "yes" if d.get("tokens_equal") else "no", d.get("why", ""), sep="\t")' "$r")
			IFS=$'\t' read -r relv toks_eq why <<<"$rel"
			st=PASS
			[ $ok -ne 0 ] && { st=FAIL; fail "$m $p $mode: $why"; }
			table+=("$(printf '%-22s %-4s %-6s %6d %12s %-7s %s' "$m" "$p" "$mode" $((n + GEN)) "$relv" "$st" "tokens equal: $toks_eq${why:+; $why}")")
			record golden "\"model\": \"$m\", \"prompt\": \"$p\", \"mode\": \"$mode\", \"result\": $r"
		done
	done <"$ROOT/tests/data/golden/prompts.tsv"
done
say ""
printf '%-22s %-4s %-6s %6s %12s %-7s %s\n' model prmt mode rows max_rel result notes
for l in "${table[@]}"; do say "$l"; done
say "(golden part done at $(elapsed) s)"

# ---- (c) the 2B-4T shape: build and bench ---------------------------------------------
prof_prog="" prof_env="" prof_model=""
if [ "$SKIP_2B" = 1 ]; then
	say ""
	say "== 2B-4T: skipped (GPU_CHECK_SKIP_2B=1); profiling the golden model $first_m instead"
	prof_prog=$WORK/g-$first_m prof_env=$first_env prof_model=$first_m
	prof_toks=496,84,104,101,32,113,117,105
else
	say ""
	say "== 2B-4T (synthetic, i2_s, Llama 3 vocabulary): build, --bench pp512/tg128"
	mkdir -p "$WORK/data/llama3"
	for f in tokens.txt merges.txt; do gzip -dc "$ROOT/tests/data/tokenizer/$f.gz" >"$WORK/data/llama3/$f"; done
	cp "$ROOT/tests/data/tokenizer/special.tsv" "$WORK/data/llama3/"
	if ! BITNETC_DATA_DIR=$WORK/data timeout 300 "$BITNETC" mkmodel --shape 2b4t --type i2_s --seed 1 \
		--llama3-vocab -o "$WORK/2b4t.gguf" >"$WORK/mkmodel.log" 2>&1; then
		cat "$WORK/mkmodel.log"
		fail "mkmodel --shape 2b4t"
	elif ! build "$WORK/2b4t.gguf" 2b4t; then
		fail "2b4t: bitnetc build --target $TARGET"
	else
		rm -f "$WORK/2b4t.gguf" # the program holds the weights
		env=$(env_for 2b4t)
		env $env "$WORK/2b4t" --info 2>&1 | grep -iE 'device|target|templates' | sed 's/^/    /'
		if env $env timeout 300 "$WORK/2b4t" --bench --pp 512 --tg 128 --reps 3 --json \
			>"$WORK/bench.json" 2>"$WORK/bench.log"; then
			b=$(python3 "$PY" bench "$WORK/bench.json") || b=""
			if [ -n "$b" ]; then
				python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("pp512: %.1f tok/s (sd %.1f), tg128: %.1f tok/s (sd %.1f), %d reps" % (d["pp_tok_s"], d["pp_tok_s_sd"], d["tg_tok_s"], d["tg_tok_s_sd"], d["reps"]))' "$b"
				record bench "\"model\": \"2b4t\", \"result\": $b"
			else
				fail "2b4t --bench: no JSON"
			fi
		else
			fail "2b4t --bench: $(tail -1 "$WORK/bench.log")"
		fi
		prof_prog=$WORK/2b4t prof_env=$env prof_model=2b4t
		prof_toks=128000,791,4062,315,9822,374,12366,13
	fi
	say "(2B-4T bench done at $(elapsed) s)"
fi

# ---- (d) per-kernel times of a decode run -----------------------------------------------
if [ -n "$prof_prog" ]; then
	say ""
	ntg=128
	[ "$FAKE" = 1 ] && ntg=8
	say "== profile: $prof_model, 8 prompt tokens + $ntg generated, each launch synchronized (BITNETC_CUDA_PROFILE=1)"
	if env $prof_env BITNETC_CUDA_PROFILE=1 timeout 180 "$prof_prog" --tokens "$prof_toks" -n $ntg \
		--temp 0 --ignore-eos >"$WORK/prof.ids" 2>"$WORK/prof.txt"; then
		if python3 "$PY" profile "$WORK/prof.txt" "$WORK/prof.json"; then
			record profile "\"model\": \"$prof_model\", \"file\": \"$WORK/prof.json\""
		else
			fail "no profile table in the program's stderr"
		fi
	else
		fail "profiled run: $(tail -1 "$WORK/prof.txt")"
	fi
fi

# ---- the JSON ----------------------------------------------------------------------
mkdir -p "$(dirname "$JSON")"
if python3 "$PY" final "$RES" "$JSON"; then
	say ""
	say "results: $JSON"
	[ -n "$OUTDIR" ] && cp "$JSON" "$OUTDIR/gpu-check.json"
else
	fail "writing $JSON"
fi
say "== gpu-check: $fails failure(s), $(elapsed) s on $gpu"
status=0
[ "$fails" -eq 0 ] || status=1
if [ -n "$OUTDIR" ]; then
	exec >&- 2>&- # let tee finish the log before the exit
	wait "$tee_pid" 2>/dev/null
fi
exit $status
