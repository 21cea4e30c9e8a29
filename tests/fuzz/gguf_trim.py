#!/usr/bin/env python3
# gguf_trim.py - makes small fuzz seeds from `bitnetc mkmodel` files: keeps the first N rows of
# token_embd.weight (and sets ARCH.vocab_size to N), or drops the tokenizer keys, or keeps only
# the tokenizer keys and no tensors. GGUF v3 in and out; the data section is copied as laid out.
import argparse
import struct

SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q",
          11: "<q", 12: "<d"}
ROW = {0: (4, 1), 1: (2, 1), 8: (34, 32), 30: (2, 1)}  # ggml type: bytes per block, block size


class Reader:
    def __init__(self, b):
        self.b, self.o = b, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.o)[0]
        self.o += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = self.b[self.o:self.o + n]
        self.o += n
        return s

    def value(self, t):
        """Skips a value of type t; returns its raw bytes (scalars also decoded)."""
        start = self.o
        if t in SCALAR:
            self.take(SCALAR[t])
        elif t == 8:
            self.string()
        elif t == 9:
            et, n = self.take("<I"), self.take("<Q")
            for _ in range(n):
                self.value(et)
        else:
            raise SystemExit(f"unknown value type {t}")
        return self.b[start:self.o]


def gstr(s):
    return struct.pack("<Q", len(s)) + s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--vocab", type=int, help="keep this many token_embd rows")
    ap.add_argument("--no-tokenizer", action="store_true")
    ap.add_argument("--tokenizer-only", action="store_true")
    a = ap.parse_args()
    b = open(a.src, "rb").read()
    r = Reader(b)
    assert b[:4] == b"GGUF" and struct.unpack_from("<I", b, 4)[0] == 3
    r.o = 8
    n_t, n_kv = r.take("<Q"), r.take("<Q")
    kvs, align, arch = [], 32, None
    for _ in range(n_kv):
        k = r.string()
        t = r.take("<I")
        raw = r.value(t)
        if k == b"general.alignment":
            align = struct.unpack("<I", raw)[0]
        if k == b"general.architecture":
            arch = raw[8:]
        kvs.append([k, t, raw])
    tensors = []
    for _ in range(n_t):
        name = r.string()
        nd = r.take("<I")
        ne = [r.take("<Q") for _ in range(nd)]
        gt, off = r.take("<I"), r.take("<Q")
        tensors.append([name, ne, gt, off])
    data = r.o + (-r.o) % align
    ends = sorted(t[3] for t in tensors) + [len(b) - data]
    blobs = []
    for name, ne, gt, off in tensors:
        end = min(e for e in ends if e > off)
        blob = b[data + off:data + end]
        if name == b"token_embd.weight" and a.vocab:
            per, blk = ROW[gt]
            blob = blob[:a.vocab * ne[0] // blk * per]
            ne[1] = a.vocab
        blobs.append(blob)
    if a.vocab:
        for kv in kvs:
            if kv[0] == arch + b".vocab_size":
                kv[2] = struct.pack("<I", a.vocab)
    if a.no_tokenizer:
        kvs = [kv for kv in kvs if not kv[0].startswith(b"tokenizer.")]
    if a.tokenizer_only:
        kvs = [kv for kv in kvs if kv[0].startswith(b"tokenizer.") or kv[0] == b"general.alignment"]
        tensors, blobs = [], []
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)))
    for k, t, raw in kvs:
        out += gstr(k) + struct.pack("<I", t) + raw
    off = 0
    for (name, ne, gt, _), blob in zip(tensors, blobs):
        out += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", x) for x in ne)
        out += struct.pack("<IQ", gt, off)
        off += len(blob) + (-len(blob)) % align
    out += bytes((-len(out)) % align)
    for blob in blobs:
        out += blob + bytes((-len(blob)) % align)
    open(a.dst, "wb").write(out)


if __name__ == "__main__":
    main()
