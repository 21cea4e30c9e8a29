#!/bin/sh
# setup.sh - installs the Debian packages bitnetc needs (as root), or prints the apt line.
# Usage: tools/setup.sh [--check]   (--check: never install, only report)
set -eu

# The compiler toolchain, LLVM 19's C API (NVPTX backend), Lua 5.4, cmocka for the tests,
# and clang with its runtime libraries for the libFuzzer build (libclang-rt-dev follows the
# distribution's default clang, which is what `clang` runs); dpkg-dev for cpack's
# dpkg-shlibdeps (the .deb package and its test).
# unicode-data (not needed to build): only tools/gen_unicode.py reads it, to regenerate
# runtime/rt_unicode_tab.h, which is committed.
PKGS="cmake make gcc libc6-dev pkg-config gzip llvm-19-dev liblua5.4-dev libcmocka-dev clang libclang-rt-dev dpkg-dev"
# The HTTP server of programs built with --server: libmicrohttpd and cJSON (headers and
# shared libraries), and curl, which its tests talk to it with.
PKGS="$PKGS libmicrohttpd-dev libcjson-dev curl"
# On x86-64 also an aarch64 cross compiler with its libc (a recommends, which
# --no-install-recommends would skip) and qemu-user: the NEON and SVE kernels' tests build for
# aarch64 and run there under emulation (tests/e2e/test_kernels.c skips them without).
# Likewise riscv64: its cross compiler and libc for cpu-rv64, and clang 19 for cpu-rvv (the
# RVV 1.0 intrinsics need clang 16+ or gcc 13+; Debian 12's gcc 12 and clang 14 lack them).
if [ "$(dpkg --print-architecture 2>/dev/null || true)" = amd64 ]; then
	PKGS="$PKGS gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"
	PKGS="$PKGS gcc-riscv64-linux-gnu libc6-dev-riscv64-cross clang-19"
fi

check_only=0
case "${1:-}" in
--check) check_only=1 ;;
"") ;;
-h|--help) sed -n '2,3s/^# //p' "$0"; exit 0 ;;
*) echo "setup.sh: unknown option '$1'" >&2; exit 1 ;;
esac

if ! command -v dpkg-query >/dev/null 2>&1; then
	echo "setup.sh: this is not a Debian-based system (no dpkg-query)." >&2
	echo "setup.sh: install the equivalents of: $PKGS" >&2
	exit 1
fi

missing() {
	out=""
	for p in $PKGS; do
		st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
		[ "$st" = installed ] || out="$out${out:+ }$p"
	done
	printf '%s' "$out"
}

miss=$(missing)
if [ -z "$miss" ]; then
	echo "setup.sh: all dependencies are installed"
	exit 0
fi
echo "setup.sh: missing packages: $miss"

if [ "$check_only" = 1 ] || [ "$(id -u)" != 0 ]; then
	echo "setup.sh: install them with:" >&2
	echo "  sudo apt-get install -y --no-install-recommends $miss" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# The package lists may be stale or absent (fresh containers): update only when needed.
# shellcheck disable=SC2086
if ! apt-get install -y --no-install-recommends $miss; then
	apt-get update
	apt-get install -y --no-install-recommends $miss
fi
miss=$(missing)
if [ -n "$miss" ]; then
	echo "setup.sh: still missing after apt-get: $miss" >&2
	exit 1
fi
echo "setup.sh: dependencies installed"
