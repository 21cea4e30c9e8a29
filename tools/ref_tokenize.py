#!/usr/bin/env python3
# ref_tokenize.py - writes tokenizer test vectors from the reference tokenizer: every text of
# tests/data/tokenizer/vectors.jsonl and vectors_ws_divergent.jsonl, then the texts below
# (what Falcon 3's split treats apart: digit runs, punctuation runs against letters,
# contractions, white space at a piece's end, Unicode punctuation, emoji, CJK), tokenized by
# tools/golden/ref_tokenize (no BOS, special-token text as text) or, one text at a time, by
# the reference's llama-tokenize (slow: the vocabulary is loaded for every text).
# Usage: tools/ref_tokenize.py REF_TOKENIZE|LLAMA_TOKENIZE MODEL.gguf > OUT.jsonl
import json, os, subprocess, sys, tempfile

EXTRA = [
    # digits: ASCII ones alone, other numbers in runs
    "12345678901234567890", "3.14159", "1,000,000", "v2.0.1", "Call 555-0123 now",
    "x1y22z333", "abc123def", "COVID19 in 2020", "100km/h", "1st 2nd 3rd", " 42", "  42",
    "\u0663\u0664\u0665 and \u0661\u0662", "\uff11\uff12\uff13", "\u00b2\u00b3 and \u00bd",
    # punctuation and ASCII symbols against letters
    "Hello!!! What?!?", "foo...bar", "a--b\u2014c", "(x+y)*z=w", "#include <stdio.h>",
    "https://example.com/path?q=1&r=2", "@user #tag $100 %50 ^caret ~tilde |pipe `tick`",
    "a_b_c snake_case __init__", "{\"json\": [1, 2]}", "C:\\path\\to", "email@example.org",
    "x<=y>=z", "a!b", " !a", "a ! b", "$hello", "a.\nb",
    # contractions: the apostrophe is punctuation here
    "it's John's", "IT'S", "don't won't I'm I'll I'd we're they've", "'s 't", "rock 'n' roll",
    "''quoted''", "it\u2019s curly",
    # white space, where a piece ends
    "a  b", "a   b", "a\tb", "a \n b", "line1\n\nline2", "  leading", "trailing  ", "a \t\n b",
    "\r\n\r\n", "x\u00a0y", "x\u3000y", "tabs\t\t\tend", "a . b", "a  .", "hi  !", "a   (b)",
    "x \u00a0 y", "a\u0085b", "\n\n\nword", "word\n\n\n",
    # Unicode punctuation
    "\u00abBonjour\u00bb", "Wait \u2014 what\u2026", "\u300c\u3053\u3093\u306b\u3061\u306f\u300d",
    "\u00bfQu\u00e9? \u00a1S\u00ed!", "\u201cquoted\u201d \u2018single\u2019",
    "\u00a71 \u00b62 \u00b7", "a\u2010b\u2011c", "\u3010\u6ce8\u610f\u3011",
    "\u300a\u4e66\u540d\u300b", "\u30fb\u30fb\u30fb", "word\u2026\u2026",
    # emoji and symbols that are not punctuation
    "\U0001f600\U0001f603 ok \U0001f44d\U0001f3fd", "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "I \u2764\ufe0f NY", "\U0001f1eb\U0001f1f7 flag", "\u00a9 \u00ae \u2122 \u20ac \u00a3 \u00a5 \u00b0 \u00b1 \u00d7 \u00f7",
    "\u2192 \u2190 \u2191", "\u2211\u222b\u221a\u221e",
    # CJK, marks, code
    "\u65e5\u672c\u8a9e\u306e\u6587\u5b57\u3001\u30c6\u30b9\u30c8\u3002",
    "\u4e2d\u6587\uff0c\u6807\u70b9\uff01", "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8\uc785\ub2c8\ub2e4.",
    "abc\u65e5\u672c123", "e\u0301", "na\u00efve caf\u00e9",
    "for (int i = 0; i < n; i++) {\n\treturn x->y;\n}", "if x==1 and y!=2:",
    "def f(a, b=3):\n    return a**b",
]


def texts(data):
    for name in ("vectors.jsonl", "vectors_ws_divergent.jsonl"):
        with open(os.path.join(data, name), encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)["text"]
    yield from EXTRA


def main():
    tool, model = sys.argv[1], sys.argv[2]
    data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data",
                        "tokenizer")
    todo = list(dict.fromkeys(texts(data)))
    if os.path.basename(tool) == "llama-tokenize":
        out = []
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "text")
            for t in todo:
                with open(path, "wb") as f:
                    f.write(t.encode("utf-8"))
                r = subprocess.run([tool, "-m", model, "-f", path, "--ids", "--no-bos",
                                    "--no-parse-special", "--log-disable"],
                                   check=True, capture_output=True, text=True).stdout
                out.append(json.loads(r.strip().splitlines()[-1]))
    else:
        feed = b"".join(t.encode("utf-8") + b"\0" for t in todo)
        r = subprocess.run([tool, model], input=feed, check=True, capture_output=True).stdout
        lines = r.decode().split("\n")[:len(todo)]
        out = [[int(x) for x in line.split(",")] if line else [] for line in lines]
    assert len(out) == len(todo)
    for t, ids in zip(todo, out):
        print(json.dumps({"text": t, "ids": ids}, ensure_ascii=False))


main()
