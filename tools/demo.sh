#!/bin/sh
# demo.sh - builds bitnetc, compiles the demo model the build generates into a standalone
# program, and runs it: its --info, greedy generation (checked against the reference
# interpreter), sampled generation, and a short benchmark.
set -eu
cd "$(dirname "$0")/.."

tools/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"

model=build/demo/tiny.gguf # made by the build (target bn_demo_model: bitnetc mkmodel)
prog=build/demo/tiny
echo
echo "== bitnetc inspect $model (first lines)"
build/bitnetc inspect "$model" | sed -n '1,12p'

echo
echo "== bitnetc build $model -o $prog"
build/bitnetc build "$model" -o "$prog"
ls -l "$prog"

echo
echo "== $prog --info"
"$prog" --info

# The prompt as token ids: BOS, then "The quick" as byte tokens (ids 0..255 are the bytes).
bos=$(build/bitnetc inspect "$model" | awk '$1 == "tokenizer.ggml.bos_token_id" { print $3 }')
prompt="${bos:-496},84,104,101,32,113,117,105,99,107"
echo
echo "== $prog --tokens $prompt -n 32 --temp 0   (greedy)"
"$prog" --tokens "$prompt" -n 32 --temp 0 --ignore-eos | tee build/demo/prog.ids
echo "== bitnetc run $model --tokens $prompt -n 32   (the reference interpreter)"
build/bitnetc run "$model" --tokens "$prompt" -n 32 --ignore-eos 2>/dev/null | tee build/demo/interp.ids
if cmp -s build/demo/prog.ids build/demo/interp.ids; then
	echo "the compiled program and the interpreter chose the same 32 tokens"
else
	echo "note: the compiled program and the interpreter differ (see above)"
fi

echo
echo "== $prog --tokens $prompt -n 32 --seed 42   (sampled: temp 0.8, top-k 40, top-p 0.95, min-p 0.05)"
"$prog" --tokens "$prompt" -n 32 --seed 42 --ignore-eos

echo
echo "== $prog --bench --pp 64 --tg 32 --reps 3"
"$prog" --bench --pp 64 --tg 32 --reps 3
