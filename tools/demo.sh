#!/bin/sh
# demo.sh - builds bitnetc, compiles the demo model the build generates into a standalone
# program, and runs it: its --info, greedy generation (checked against the reference
# interpreter), sampled generation, and a short benchmark; then a small model with the
# real Llama 3 vocabulary, compiled and run on text: a completion and a chat.
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

# Text in, text out: the same kind of model with the Llama 3 vocabulary (and the BitNet
# chat template) baked in. The weights are random, so the words are too.
chat=build/demo/chat
echo
echo "== bitnetc mkmodel --llama3-vocab ... -o $chat.gguf && bitnetc build $chat.gguf -o $chat"
build/bitnetc mkmodel --shape tiny --llama3-vocab --layers 2 --hidden 256 --ffn 512 \
	--heads 4 --kv-heads 2 --vocab 128256 --seed 1 -o "$chat.gguf"
build/bitnetc build "$chat.gguf" -o "$chat"
echo
echo "== bitnetc tokenize $chat.gguf \"Hello, world\""
build/bitnetc tokenize "$chat.gguf" "Hello, world"
echo
echo "== $chat -p \"Hello, world\" -n 24 --seed 1"
"$chat" -p "Hello, world" -n 24 --seed 1 2>/dev/null
echo
echo
echo "== $chat -cnv -sys \"You are terse.\" -n 16 -v, fed two turns and /exit on stdin:"
echo "   > Hi! Who are you?"
echo "   > Tell me a joke."
printf 'Hi! Who are you?\nTell me a joke.\n/exit\n' |
	"$chat" -cnv -sys "You are terse." -n 16 --seed 2 -v 2>&1 | grep -v -e '^$' -e 'time ' -e 'sampling:'
