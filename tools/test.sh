#!/bin/sh
# test.sh - builds and runs every test: warnings as errors + ctest, and the host-dependent
# tests with the host masked to lesser CPUs; again under ASan+UBSan; then the libFuzzer
# harnesses, 60 s in all. --quick: the first build + ctest only.
set -u
cd "$(dirname "$0")/.." || exit 1

quick=0
case "${1:-}" in
--quick) quick=1 ;;
"") ;;
-h|--help) sed -n '2,4s/^# //p' "$0"; exit 0 ;;
*) echo "test.sh: unknown option '$1' (--quick)" >&2; exit 1 ;;
esac

jobs=$(nproc 2>/dev/null || echo 2)
summary=""
failed=0

# step NAME COMMAND...: runs it, records pass/fail and the time it took.
step() {
	name=$1
	shift
	echo
	echo "== $name"
	t0=$(date +%s)
	if "$@"; then r=ok; else r=FAILED; failed=1; fi
	t=$(($(date +%s) - t0))
	summary="$summary$(printf '%-34s %-7s %4ss' "$name" "$r" "$t")
"
	[ "$r" = ok ]
}

finish() {
	echo
	echo "== summary"
	printf '%s' "$summary"
	if [ "$failed" = 0 ]; then echo "all passed"; else echo "FAILED"; fi
	exit "$failed"
}

step "setup" tools/setup.sh || finish

step "build (-Werror)" sh -c "cmake -S . -B build-test -DBITNETC_WERROR=ON >/dev/null &&
	cmake --build build-test -j$jobs" &&
	step "ctest" sh -c "cd build-test && ctest --output-on-failure -j2"
[ "$quick" = 1 ] && finish

# The tests whose paths depend on the host's CPU, again with the host shown as a lesser one
# (BITNETC_CPU_MASK hides features from the detection that native, targets and the
# programs use): an AMX machine also runs its AVX-512-only and AVX2-only paths, an AVX-512
# one its AVX2 paths, an AVX2 one the portable paths, an SVE one its NEON dot paths.
host_masks() {
	feats=$(build-test/bitnetc version 2>/dev/null | sed -n 's/^host: .*CPU features: //p')
	case " $feats " in
	*" amx_int8 "*) echo "avx512 avx2" ;;
	*" avx512_vnni "*) echo "avx2" ;;
	*" avx2 "*) echo "generic" ;;
	*" sve "*) echo "neon-dot" ;; # an SVE host also runs its NEON paths
	esac
}
# (test_build is left out: its native builds are the explicit cpu-avx2/cpu-generic ones it
# also makes, and it is the slowest test)
host_tests='e2e/test_kernels|codegen/test_hostile|codegen/test_targets|passes/test_pipeline|passes/test_lut_specialize'
if [ -x build-test/bitnetc ]; then
	for mask in $(host_masks); do
		step "ctest (BITNETC_CPU_MASK=$mask)" sh -c "cd build-test &&
			BITNETC_CPU_MASK=$mask ctest --output-on-failure -j2 -R '$host_tests'"
	done
fi

step "build (ASan+UBSan)" sh -c "cmake -S . -B build-asan -DBITNETC_SANITIZE=ON \
	-DCMAKE_BUILD_TYPE=Debug >/dev/null && cmake --build build-asan -j$jobs" &&
	step "ctest (ASan+UBSan)" sh -c "cd build-asan && ctest --output-on-failure -j2"

# libFuzzer: the whole tree with coverage instrumentation, linked by the harness targets;
# each harness fuzzes for its share of 60 s from its corpus, tests/fuzz/corpus-NAME.
# shellcheck disable=SC2317 # called through step
fuzz() {
	harnesses="gguf model tok cli"
	cmake -S . -B build-fuzz -DBITNETC_FUZZ=ON -DCMAKE_C_COMPILER=clang \
		-DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link,address,undefined" >/dev/null &&
		cmake --build build-fuzz -j"$jobs" --target bn_fuzz_all || return 1
	frc=0
	for h in $harnesses; do
		# A scratch copy: the fuzzer adds what it finds to its corpus directory.
		work=build-fuzz/corpus-run/$h
		log=build-fuzz/fuzz_$h.log
		rm -rf "$work" build-fuzz/fuzz_"$h"-* && mkdir -p "$work"
		if [ -d tests/fuzz/corpus-"$h" ]; then cp -R tests/fuzz/corpus-"$h"/. "$work"/; fi
		build-fuzz/tests/fuzz_"$h" -max_total_time=15 -timeout=10 -rss_limit_mb=2048 \
			-artifact_prefix=build-fuzz/fuzz_"$h"- "$work" 2>"$log"
		rc=$?
		echo "fuzz_$h: $(grep -m 1 '^Done' "$log" || tail -n 1 "$log")"
		[ "$rc" = 0 ] && continue
		frc=1
		echo "fuzz_$h failed (log: $log)"
		grep -m 20 -E 'ERROR|SUMMARY|^fuzz_[a-z]*: |Test unit written|Base64' "$log"
		for a in build-fuzz/fuzz_"$h"-*; do
			[ -f "$a" ] && { echo "$a:"; od -A d -c "$a" | head -n 20; }
		done
	done
	return "$frc"
}
step "fuzz (4 harnesses x 15 s)" fuzz
finish
