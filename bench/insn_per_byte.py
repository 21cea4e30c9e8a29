#!/usr/bin/env python3
# bench/insn_per_byte.py - instructions per weight byte in the inner loop of the one-token
# ternary matmul (the GEMV) of each CPU target, counted in the assembly its compiler makes
# from the generated model.c: `bitnetc build --emit-c` writes the sources and the Makefile,
# model.c is compiled again with the same command and -S, and in the GEMV driver's
# assembly the innermost loop around the dot-product instruction (vwmacc, sdot, smlal,
# vpdpbusd) is counted from its label to its backward branch. The bytes one pass of that
# loop reads: RVV, VLEN/8 x the LMUL of the e8 vsetvli in force (printed for VLEN 128, 256,
# 512); SVE, one vector of bytes (svcntb(): printed for 128, 256 and 512 bits) per row, the
# rows a pass reads being its sdots / 4 (the loop with the most sdots: two rows a pass);
# the x16 kernels, 64 bytes (one chunk: 16 rows x 16 k) per 16 sdot / 4 vpdpbusd / 24
# smlal and smlal2. A static count: no cache or pipeline behaviour, and a target whose
# compiler is missing is left out. Prints a markdown table.
#
# Usage: bench/insn_per_byte.py [MODEL]  (default tests/data/golden/models/tiny-b158-i2_s.gguf)
# Knobs (environment): BITNETC (build/bitnetc), OUT (bench/out), RVV_CC (clang-19).
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BITNETC = os.environ.get("BITNETC", os.path.join(ROOT, "build", "bitnetc"))
OUT = os.environ.get("OUT", os.path.join(ROOT, "bench", "out"))
RVV_CC = os.environ.get("RVV_CC", "clang-19")
MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    ROOT, "tests", "data", "golden", "models", "tiny-b158-i2_s.gguf")

# target, compiler and its --cflags, the GEMV driver's name, the loop's marker, and how
# many of the marker one 64-byte chunk takes (None: RVV, from its vsetvli; "vl": SVE, one
# vector of weight bytes per pass)
TARGETS = [
    ("cpu-rvv", RVV_CC, "--target=riscv64-linux-gnu", r"tmm_i2sv_k\d+_n\d+_t1", r"vwmacc", None),
    ("cpu-sve", "aarch64-linux-gnu-gcc", "", r"tmm_i2ssve_k\d+_n\d+_t1", r"\bsdot\b", "vl"),
    ("cpu-neon-dot", "aarch64-linux-gnu-gcc", "", r"tmm_x16n_k\d+_n\d+_r1_t1", r"\bsdot\b", 16),
    ("cpu-neon", "aarch64-linux-gnu-gcc", "", r"tmm_x16n_k\d+_n\d+_r1_t1", r"\bsmlal2?\b", 24),
    ("cpu-avx512", "cc", "", r"tmm_x16z_k\d+_n\d+_r1_t1", r"vpdpbusd", 4),
]


def run(cmd, cwd=None):
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)


def assembly(target, cc, cflags):
    """model.c of MODEL for target compiled with -S, as its build compiles it."""
    d = os.path.join(OUT, "insn-" + target)
    shutil.rmtree(d, ignore_errors=True)
    cmd = [BITNETC, "build", MODEL, "-o", os.path.join(OUT, "insn-" + target + ".prog"),
           "--target", target, "--cc", cc, "--emit-c", d]
    if cflags:
        cmd += ["--cflags", cflags]
    run(cmd)
    mk = open(os.path.join(d, "Makefile")).read()
    line = re.search(r"^model\.o: model\.c\n\t(.*)$", mk, re.M).group(1)
    line = line.replace("-c -o model.o model.c", "-S -o model.s model.c")
    run(["sh", "-c", line], cwd=d)
    return open(os.path.join(d, "model.s")).read()


def functions(asm, pattern):
    """The instruction lines of each function whose name matches pattern."""
    out, cur = {}, None
    for raw in asm.splitlines():
        line = raw.split("//")[0].split("#")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        m = re.match(r"^([A-Za-z_.$][\w.$]*):", line)
        if m and not m.group(1).startswith(".L"):
            cur = m.group(1) if re.fullmatch(pattern, m.group(1)) else None
            if cur:
                out[cur] = []
            continue
        if cur is not None and line.strip():
            out[cur].append(line.strip())
    return out


def inner_loop(lines, marker, most=False):
    """The instructions of the smallest loop (label .. backward branch) holding marker
    (most: of the innermost loops, the one holding the most of them), and the index of its
    label in lines."""
    labels = {}
    loops = []  # (label index, branch index, body)
    for i, l in enumerate(lines):
        m = re.match(r"^([.\w$]+):", l)
        if m:
            labels[m.group(1)] = i
            continue
        if l.startswith("."):
            continue
        ops = re.split(r"[\s,]+", l)
        for tok in ops[1:]:
            if tok in labels:
                body = [x for x in lines[labels[tok] + 1:i + 1]
                        if not x.startswith(".") and not re.match(r"^[.\w$]+:", x)]
                if any(re.search(marker, x) for x in body):
                    loops.append((labels[tok], i, body))
    if most:  # innermost: no other loop inside
        loops = [a for a in loops
                 if not any(b is not a and a[0] <= b[0] and b[1] <= a[1] for b in loops)]
    best = None
    for start, _, body in loops:
        k = sum(bool(re.search(marker, x)) for x in body)
        key = (-k if most else 0, len(body))
        if best is None or key < best[2]:
            best = (start, body, key)
    return best[:2] if best else None


def main():
    os.makedirs(OUT, exist_ok=True)
    rows = []
    for target, cc, cflags, fn, marker, per_chunk in TARGETS:
        if not shutil.which(cc):
            print(f"{target}: no {cc} here, left out", file=sys.stderr)
            continue
        try:
            asm = assembly(target, cc, cflags)
        except subprocess.CalledProcessError as e:
            print(f"{target}: {e.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        fns = functions(asm, fn)
        if not fns:
            print(f"{target}: no function matching {fn}", file=sys.stderr)
            continue
        name, lines = sorted(fns.items())[0]
        found = inner_loop(lines, marker, per_chunk == "vl")
        if not found:
            print(f"{target}: no loop around {marker} in {name}", file=sys.stderr)
            continue
        start, loop = found
        n = len(loop)
        if per_chunk == "vl":
            rows_per_pass = sum(bool(re.search(marker, x)) for x in loop) // 4
            for bits in (128, 256, 512):
                rows.append((f"{target} ({bits}-bit)", name, n, bits // 8 * rows_per_pass))
        elif per_chunk is None:
            # the e8 vsetvli in force: in the loop, else the last one before it
            vs = [x for x in loop + lines[start::-1]
                  if x.startswith("vsetvli") and ",e8," in x.replace(" ", "")]
            lmul = int(re.search(r"e8,\s*m(\d)", vs[0]).group(1)) if vs else 1
            for vlen in (128, 256, 512):
                nbytes = vlen // 8 * lmul
                rows.append((f"{target} (VLEN {vlen})", name, n, nbytes))
        else:
            nbytes = 64 * sum(bool(re.search(marker, x)) for x in loop) // per_chunk
            rows.append((target, name, n, nbytes))
    print("| target | GEMV loop (function) | instructions per pass | weight bytes per pass | instructions per weight byte |")
    print("| --- | --- | ---: | ---: | ---: |")
    for t, name, n, nb in rows:
        print(f"| {t} | `{name}` | {n} | {nb} | {n / nb:.2f} |")


if __name__ == "__main__":
    main()
