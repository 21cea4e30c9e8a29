#!/bin/sh
# demo.sh - builds bitnetc and runs it on the demo model the build generates: inspect, then
# greedy generation in the reference interpreter.
set -eu
cd "$(dirname "$0")/.."

tools/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"

model=build/demo/tiny.gguf # made by the build (target bn_demo_model: bitnetc mkmodel)
echo
echo "== bitnetc inspect $model"
build/bitnetc inspect "$model"

# The prompt as token ids: BOS, then "The quick" as byte tokens (ids 0..255 are the bytes).
bos=$(build/bitnetc inspect "$model" | awk '$1 == "tokenizer.ggml.bos_token_id" { print $3 }')
prompt="${bos:-496},84,104,101,32,113,117,105,99,107"
echo
echo "== bitnetc run $model --tokens $prompt -n 32"
build/bitnetc run "$model" --tokens "$prompt" -n 32
