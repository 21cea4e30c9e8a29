"""bitnetc_model.py - ctypes bindings (standard library only) over a model built as a shared
library: `bitnetc build MODEL --shared -o libNAME.so`, whose functions are bitnetc.h's named
NAME_ in place of bn_.

    from bitnetc_model import Model
    with Model("./libdemo.so", prefix="demo") as m:
        for text in m.generate("Once upon a time", max_tokens=32, temp=0):
            print(text, end="", flush=True)

generate() yields the text as the library decides it (whole UTF-8 characters); leaving
the loop early cancels the generation (bn_ctx_cancel) and waits for it to stop.
"""

import ctypes
import queue
import threading

_TEXT_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_char),
                            ctypes.c_size_t)
_TOKEN_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int32)
_LOGITS_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float),
                              ctypes.c_int32)

BN_E_CANCELLED = -15
BN_TOKENIZE_ADD_BOS = 1
BN_TOKENIZE_PARSE_SPECIAL = 2


class _SamplerParams(ctypes.Structure):
    _fields_ = [("temp", ctypes.c_float), ("top_k", ctypes.c_int32), ("top_p", ctypes.c_float),
                ("min_p", ctypes.c_float), ("repeat_penalty", ctypes.c_float),
                ("repeat_last_n", ctypes.c_int32), ("seed", ctypes.c_uint64)]


class _GenerateParams(ctypes.Structure):
    _fields_ = [("max_tokens", ctypes.c_int32), ("flags", ctypes.c_int),
                ("stop", ctypes.POINTER(ctypes.c_char_p)), ("n_stop", ctypes.c_int32),
                ("on_text", _TEXT_CB), ("on_token", _TOKEN_CB), ("on_logits", _LOGITS_CB),
                ("user", ctypes.c_void_p)]


class _GenerateResult(ctypes.Structure):
    _fields_ = [("n_prompt", ctypes.c_int32), ("n_generated", ctypes.c_int32),
                ("n_decoded", ctypes.c_int32), ("stop", ctypes.c_int),
                ("prompt_s", ctypes.c_double), ("gen_s", ctypes.c_double)]


class BitnetcError(RuntimeError):
    pass


class Model:
    """One model (the weights linked into the library) and one context of n_ctx positions."""

    def __init__(self, path, prefix, n_ctx=0, n_threads=0):
        self._lib = ctypes.CDLL(path)
        self._p = prefix
        f = self._fn
        f("strerror", ctypes.c_char_p, [ctypes.c_int])
        f("model_open", ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t])
        f("model_close", None, [ctypes.c_void_p])
        f("model_meta", ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_char_p])
        f("model_meta_int", ctypes.c_int64, [ctypes.c_void_p, ctypes.c_char_p])
        f("ctx_new", ctypes.c_void_p,
          [ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32, ctypes.c_char_p, ctypes.c_size_t])
        f("ctx_free", None, [ctypes.c_void_p])
        f("ctx_reset", None, [ctypes.c_void_p])
        f("ctx_cancel", None, [ctypes.c_void_p, ctypes.c_int])
        f("ctx_last_error", ctypes.c_char_p, [ctypes.c_void_p])
        f("tokenize_ex", ctypes.c_int32, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                                          ctypes.POINTER(ctypes.c_int32), ctypes.c_int32,
                                          ctypes.c_int])
        f("model_add_bos", ctypes.c_int, [ctypes.c_void_p])
        f("sampler_defaults", _SamplerParams, [])
        f("sampler_new", ctypes.c_void_p, [ctypes.c_void_p, ctypes.POINTER(_SamplerParams)])
        f("sampler_free", None, [ctypes.c_void_p])
        f("generate_defaults", _GenerateParams, [])
        f("generate", ctypes.c_int,
          [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32), ctypes.c_int32,
           ctypes.POINTER(_GenerateParams), ctypes.POINTER(_GenerateResult)])
        err = ctypes.create_string_buffer(512)
        self._m = self._call("model_open", None, err, len(err))
        if not self._m:
            raise BitnetcError(err.value.decode(errors="replace"))
        self._c = self._call("ctx_new", self._m, n_ctx, n_threads, err, len(err))
        if not self._c:
            self._call("model_close", self._m)
            raise BitnetcError(err.value.decode(errors="replace"))
        self.last = None  # the last generation's counts and times

    def _fn(self, name, restype, argtypes):
        fn = getattr(self._lib, "%s_%s" % (self._p, name))
        fn.restype = restype
        fn.argtypes = argtypes

    def _call(self, name, *args):
        return getattr(self._lib, "%s_%s" % (self._p, name))(*args)

    def meta(self, key):
        v = self._call("model_meta", self._m, key.encode())
        return v.decode() if v is not None else None

    def meta_int(self, key):
        return self._call("model_meta_int", self._m, key.encode())

    def tokenize(self, text, add_bos=True):
        data = text.encode()
        flags = BN_TOKENIZE_PARSE_SPECIAL
        if add_bos and self._call("model_add_bos", self._m):
            flags |= BN_TOKENIZE_ADD_BOS
        cap = len(data) + 8
        while True:
            ids = (ctypes.c_int32 * cap)()
            n = self._call("tokenize_ex", self._m, data, len(data), ids, cap, flags)
            if n < 0:
                raise BitnetcError(self._call("strerror", n).decode())
            if n <= cap:
                return list(ids[:n])
            cap = n

    def generate(self, prompt, max_tokens=64, temp=0.8, seed=42, stop=(), reset=True):
        """Yields the generated text piece by piece (prompt: text, or a list of token ids)."""
        ids = self.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
        if reset:
            self._call("ctx_reset", self._c)
        sp = self._call("sampler_defaults")
        sp.temp, sp.seed = temp, seed
        smp = self._call("sampler_new", self._m, ctypes.byref(sp))
        if not smp:
            raise BitnetcError("out of memory")
        pieces = queue.Queue()
        done = object()

        def on_text(user, text, n):
            pieces.put(ctypes.string_at(text, n).decode("utf-8"))
            return 0

        cb = _TEXT_CB(on_text)
        gp = self._call("generate_defaults")
        gp.max_tokens = max_tokens
        gp.on_text = cb
        stops = [s.encode() for s in stop]
        arr = (ctypes.c_char_p * max(1, len(stops)))(*stops)
        if stops:
            gp.stop, gp.n_stop = arr, len(stops)
        res = _GenerateResult()
        tok = (ctypes.c_int32 * len(ids))(*ids)
        status = []

        def worker():
            status.append(self._call("generate", self._c, smp, tok, len(ids),
                                     ctypes.byref(gp), ctypes.byref(res)))
            pieces.put(done)

        th = threading.Thread(target=worker)
        th.start()
        finished = False
        try:
            while True:
                piece = pieces.get()
                if piece is done:
                    finished = True
                    break
                yield piece
        finally:
            if not finished:
                self._call("ctx_cancel", self._c, 1)  # the consumer left early
            th.join()
            self._call("sampler_free", smp)
            self.last = {k: getattr(res, k) for k, _ in _GenerateResult._fields_}
        rc = status[0] if status else 0
        if rc not in (0, BN_E_CANCELLED):
            raise BitnetcError("%s: %s" % (self._call("strerror", rc).decode(),
                                           self._call("ctx_last_error", self._c).decode()))

    def close(self):
        if self._c:
            self._call("ctx_free", self._c)
            self._c = None
        if self._m:
            self._call("model_close", self._m)
            self._m = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
