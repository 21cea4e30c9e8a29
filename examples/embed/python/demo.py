"""demo.py - streams a model's text from Python through bitnetc_model.py (ctypes, standard
library only) over a library built with `bitnetc build MODEL --shared -o libdemo.so`.

    python3 demo.py ./libdemo.so demo "Once upon a time" [N_TOKENS [TEMP]]

Prints the generated text as it comes, then (on stderr) the counts and a second
generation left after three pieces, which cancels it.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bitnetc_model import Model  # noqa: E402


def main():
    if len(sys.argv) < 4:
        sys.stderr.write(__doc__)
        return 2
    lib, prefix, prompt = sys.argv[1:4]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 32
    temp = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    with Model(lib, prefix, n_ctx=512) as m:
        sys.stderr.write("[%s, %s, %d layers]\n" % (m.meta("name"), m.meta("target"),
                                                    m.meta_int("n_layer")))
        for text in m.generate(prompt, max_tokens=n, temp=temp):
            sys.stdout.write(text)
            sys.stdout.flush()
        sys.stdout.write("\n")
        sys.stderr.write("[%(n_prompt)d prompt tokens, %(n_generated)d generated]\n" % m.last)
        got = 0
        for _ in m.generate(prompt, max_tokens=n, temp=temp):
            got += 1
            if got == 3:
                break
        sys.stderr.write("[left after %d pieces: %d tokens generated, stop reason %d]\n"
                         % (got, m.last["n_generated"], m.last["stop"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
