/* bitnetc.h - the runtime API of a program built by bitnetc: one model (the weights, mapped
 * read-only and shared) and any number of contexts (a KV cache, activations and a thread
 * pool each) that run in different threads at once. The same header for every model;
 * C11, usable from C++. Nothing here prints or exits: every call returns a status (BN_OK
 * or a negative BN_E_* code) with a message in the caller's err buffer, or for a context
 * in bn_ctx_last_error.
 *
 * A program that uses it compiles every .c file `bitnetc build --emit-c DIR` writes except
 * DIR/main.c (the command-line program, itself a client of this API) with its own main.
 *
 * A library built with `bitnetc build --lib` or `--shared` (or by the tree `bitnetc emit`
 * writes) exports these functions named PREFIX_ in place of bn_ (tiny_decode for
 * bn_decode, with --prefix tiny), so that several models link into one product: its header
 * PREFIX.h declares them, with the types and codes from here. Its sources are compiled with
 * BN_NAMES, which maps the names below through bn_names.h (written beside them). */
#ifndef BITNETC_API_H
#define BITNETC_API_H

#ifdef BN_NAMES
#include "bn_names.h"
#endif

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BN_API_VERSION 4

/* ---- status codes --------------------------------------------------------------- */

enum {
	BN_OK = 0,
	BN_E_ARG = -1,          /* a bad argument (NULL, a count or flag out of range) */
	BN_E_NOMEM = -2,        /* out of memory */
	BN_E_WEIGHTS = -3,      /* the weights cannot be opened, or are missing, truncated,
	                         * damaged or another model's */
	BN_E_CPU = -4,          /* this CPU (or the OS) will not run the model's code */
	BN_E_CPU_MASK = -5,     /* BITNETC_CPU_MASK names no CPU family */
	BN_E_MODEL = -6,        /* the linked model code is broken or of another ABI */
	BN_E_CTX = -7,          /* the context is full, or its KV cache cannot be allocated */
	BN_E_TOKEN = -8,        /* a token id outside the vocabulary */
	BN_E_NONFINITE = -9,    /* activations or logits went NaN or infinite */
	BN_E_NO_TOKENIZER = -10, /* the model was built without a tokenizer */
	BN_E_TOKENIZER = -11,   /* the tokenizer in the weights is unusable */
	BN_E_THREADS = -12,     /* threads cannot be started */
	BN_E_TEMPLATE = -13,    /* no such chat template, or its tokens are not in the vocabulary */
	BN_E_DEVICE = -14,      /* no usable GPU for a model built for one: no driver, no
	                         * device, one older than the program was built for, or too
	                         * little device memory */
	BN_E_CANCELLED = -15,   /* bn_ctx_cancel asked the call to stop; it did, between two
	                         * forward calls */
};

/* A short description of a code ("out of memory"); never NULL. */
const char *bn_strerror(int code);
/* The version of bitnetc that built the runtime ("0.1.0"). */
const char *bn_version(void);

/* ---- the model ------------------------------------------------------------------ */

typedef struct bn_model bn_model;
typedef struct bn_ctx bn_ctx;

enum {
	/* Only maps and checks the weights (the trailer; bn_model_verify reads them all):
	 * no CPU check, no model init, no contexts. A broken tokenizer does not fail the
	 * open (bn_model_tokenizer_status says why). For --info and --verify. */
	BN_OPEN_INSPECT = 1,
	/* Maps the weights lazily from their file (or, for a library with linked weights,
	 * keeps them where the loader put them) instead of copying them into anonymous
	 * huge-page memory, the default: faster to start, but the decode speed then depends on
	 * where the page cache placed the file. */
	BN_OPEN_MMAP = 2,
	/* mlock()s the memory holding the weights; BN_E_NOMEM when RLIMIT_MEMLOCK is smaller. */
	BN_OPEN_MLOCK = 4,
};

/* Called in the opening thread while the weights are copied: done of total bytes (the
 * last call has done == total). The library itself never prints. */
typedef void (*bn_progress_fn)(void *user, uint64_t done, uint64_t total);

/* Checks that the model code is sound and that this CPU has what it was compiled for
 * (less what BITNETC_CPU_MASK hides), without opening anything: BN_OK, BN_E_MODEL,
 * BN_E_CPU_MASK or BN_E_CPU, with the reason in err. bn_model_open does it too. */
int bn_model_check(char *err, size_t err_len);
/* Opens the model linked into this program: checks it (bn_model_check), asks the OS for
 * the CPU state it needs (the AMX tiles), reads the weights into anonymous memory
 * (BN_OPEN_MMAP: maps them) (weights_path, or NULL: those
 * linked into the library, else the payload appended to the running executable, found
 * through /proc/self/exe; a library built with --weights-file needs the path), compares
 * their hash, opens the tokenizer in them and runs the model's init (for a model built
 * for a GPU: BN_E_DEVICE when there is no usable one). NULL on failure, with the reason in
 * err (err_len 0: no message). */
bn_model *bn_model_open(const char *weights_path, char *err, size_t err_len);
/* The same with argv0 (how messages name the executable, and where /proc/self/exe is
 * missing how it is found through $PATH; NULL: /proc/self/exe), flags BN_OPEN_*, and the
 * status in *code (may be NULL). */
bn_model *bn_model_open_ex(const char *weights_path, const char *argv0, int flags, int *code,
			   char *err, size_t err_len);
/* The same with a progress callback (NULL: none) and its user pointer. */
bn_model *bn_model_open_progress(const char *weights_path, const char *argv0, int flags,
				 bn_progress_fn progress, void *user, int *code, char *err,
				 size_t err_len);
void bn_model_close(bn_model *m);
/* For a model built for a GPU: one line about the device it would run on, or why there is
 * none, into buf (this probes the driver and keeps nothing open); returns 1. A model that
 * runs on the CPU: 0 (buf gets ""). buf NULL: only says which, without probing. */
int bn_model_device_info(char *buf, size_t n);
/* Reads every byte of the weights and compares their hash with the one the program was
 * built with (bn_model_open compares only the trailer's, so that the start stays lazy):
 * BN_OK, or BN_E_WEIGHTS with the damage in err. */
int bn_model_verify(const bn_model *m, char *err, size_t err_len);

/* What the model says about itself. m may be NULL for the model linked into this program
 * (what it was compiled with; nothing opened) except where said. */
int32_t bn_model_n_vocab(const bn_model *m);     /* rows of logits */
int32_t bn_model_n_ctx_train(const bn_model *m); /* the training context; 0: unknown */
/* Text: "name", "arch", "target" (the code generation target), "pipeline", "version" (of
 * bitnetc), "cpu_features" (those required, space-separated; "" for none), "info"
 * (multi-line: shapes, kernels, batch sizes), "chat_template" (the built-in one's name,
 * "none" without), "weights_path" (how messages name the weights; needs m),
 * "weights_held" (one line: how they are held, copied or mapped; needs m), "thp" (the
 * transparent huge page mode: always, madvise, never, "" unknown; needs m). NULL for an
 * unknown key. */
const char *bn_model_meta(const bn_model *m, const char *key);
/* Numbers: "n_layer", "n_embd", "bos", "eos" (-1: none), "max_batch" (tokens per forward
 * call), "scratch_bytes", "weights_bytes", "weights_hash" (its 64 bits), "tok_bytes" (the
 * tokenizer's bytes in the weights; 0: none), "weights_embedded" (1 if in the executable
 * or linked into the library; needs m), "weights_copied" (1: copied into anonymous memory,
 * 0: mapped or linked; needs m), "weights_locked", "weights_huge_pages" (2 MiB pages
 * backing the copy), "weights_held_bytes" (of the copy), "weights_load_us" (the time to
 * copy or map them), and n_vocab, n_ctx_train. -1 for an unknown key. */
int64_t bn_model_meta_int(const bn_model *m, const char *key);
/* The token counts the model has a forward function for (ascending, the first 1, the last
 * max_batch): up to cap of them into sizes; returns how many there are. */
int32_t bn_model_batch_sizes(const bn_model *m, int32_t *sizes, int32_t cap);
/* Bytes of the KV cache a context of n_ctx positions holds. */
uint64_t bn_model_kv_bytes(const bn_model *m, int32_t n_ctx);
/* The context bn_ctx_new gives for n_ctx 0: the training context (4096 when unknown),
 * capped so that the KV cache stays under a quarter of the physical memory. */
int32_t bn_model_default_ctx(const bn_model *m);

/* ---- contexts ------------------------------------------------------------------- */

/* The threads a context gets for n_threads 0: one per online CPU, at most 512. */
int32_t bn_default_threads(void);
/* A context of n_ctx positions (0: bn_model_default_ctx) running its forward calls on
 * n_threads threads (0: one per online CPU, at most 512). Contexts of one model share its
 * weights; each may run in a thread of its own, at the same time as the others. NULL on
 * failure with the reason in err: BN_E_ARG, BN_E_CTX (the KV cache cannot be allocated),
 * BN_E_NOMEM, BN_E_THREADS, or the model's own. The context must be freed before its
 * model is closed. */
bn_ctx *bn_ctx_new(bn_model *m, int32_t n_ctx, int32_t n_threads, char *err, size_t err_len);
/* The same with the status in *code (may be NULL). */
bn_ctx *bn_ctx_new_ex(bn_model *m, int32_t n_ctx, int32_t n_threads, int *code, char *err,
		      size_t err_len);
/* The most sequences one context holds. */
#define BN_MAX_SEQ 1024
/* A context of n_seq sequences (1..BN_MAX_SEQ) of n_ctx positions each (0:
 * bn_model_default_ctx / n_seq), decoded together by bn_decode_batch (llama.cpp's
 * n_seq_max): its KV cache holds n_seq times what one sequence's does. bn_ctx_new_ex is
 * n_seq 1. The same codes; BN_E_ARG for n_seq out of range. */
bn_ctx *bn_ctx_new_seq(bn_model *m, int32_t n_ctx, int32_t n_seq, int32_t n_threads, int *code,
		       char *err, size_t err_len);
int32_t bn_ctx_n_seq(const bn_ctx *c);
void bn_ctx_free(bn_ctx *c);
const bn_model *bn_ctx_model(const bn_ctx *c);
int32_t bn_ctx_n_ctx(const bn_ctx *c);
int32_t bn_ctx_n_threads(const bn_ctx *c);
/* Caps the tokens of one forward call at n (1..max_batch; 0: max_batch, the default). A
 * long decode is split greedily over the model's batch sizes up to the cap, largest first
 * (bn_decode_split); n 1 feeds token by token, the reference's step mode. */
int bn_ctx_set_ubatch(bn_ctx *c, int32_t n);
int32_t bn_ctx_ubatch(const bn_ctx *c);
/* The positions the KV cache holds of sequence 0: where the next bn_decode appends. */
int32_t bn_ctx_pos(const bn_ctx *c);
/* The positions sequence seq holds (its length); BN_E_ARG for a seq outside 0..n_seq-1. */
int32_t bn_ctx_seq_pos(const bn_ctx *c, int32_t seq);
/* Starts over at position 0, every sequence (the cache is overwritten as decoding goes). */
void bn_ctx_reset(bn_ctx *c);
/* Keeps positions [0, n_keep) of the cache: the next bn_decode appends at n_keep, and
 * gives the bits it would give after decoding those n_keep tokens alone (with the same
 * call split). BN_OK; BN_E_ARG when n_keep < 0 or n_keep > bn_ctx_pos(c). */
int bn_ctx_trim(bn_ctx *c, int32_t n_keep);
/* bn_ctx_trim for sequence seq, the others untouched; seq -1: every sequence longer than
 * n_keep is cut to n_keep (bn_ctx_seq_trim(c, -1, 0) empties them all). BN_OK; BN_E_ARG
 * for a seq outside -1..n_seq-1, n_keep < 0, or n_keep past the sequence's length. */
int bn_ctx_seq_trim(bn_ctx *c, int32_t seq, int32_t n_keep);
/* Asks the context's running (or next) bn_decode, bn_decode_ex, bn_generate or chat turn
 * to stop (on 1), or withdraws the request (on 0). Safe from any thread and from a signal
 * handler (it only sets a flag). The decode sees it before each forward call, so a long
 * prompt stops between two calls: the positions decoded so far stay in the cache and
 * bn_ctx_pos is after them. The call that stops returns BN_E_CANCELLED and withdraws the
 * request itself; a request no call has seen stays until one does. */
void bn_ctx_cancel(bn_ctx *c, int on);
/* The message of the context's last failed call ("" if none). */
const char *bn_ctx_last_error(const bn_ctx *c);
/* After BN_E_NONFINITE: the position and token where the first NaN or infinity showed,
 * and the layer whose output (the residual stream) held it: -1 the token's embedding
 * row, BN_LAYER_LOGITS its logits row, BN_LAYER_UNKNOWN when the model did not say.
 * BN_OK, or BN_E_ARG when the last call did not fail that way. */
#define BN_LAYER_LOGITS (-2)
#define BN_LAYER_UNKNOWN (-3)
int bn_ctx_nonfinite(const bn_ctx *c, int32_t *pos, int32_t *token, int32_t *layer);

/* ---- decoding ------------------------------------------------------------------- */

enum {
	/* logits gets one row, that of the last token; calls before the last compute none
	 * and the last runs the output head for its last row alone */
	BN_DECODE_LAST = 1,
	/* the n tokens in one forward call (n <= bn_ctx_ubatch), as bn_decode_split gives
	 * them, so that a caller can take the rows call by call */
	BN_DECODE_ONE_CALL = 2,
};

/* Evaluates tokens[0..n) at positions bn_ctx_pos(c).. and appends them to the context,
 * in forward calls split as bn_decode_split says. logits is NULL or gets n rows of
 * n_vocab. Returns BN_OK; BN_E_ARG (n < 1), BN_E_TOKEN (an id outside the vocabulary),
 * BN_E_CTX (the context is full) before anything runs; BN_E_NONFINITE (see
 * bn_ctx_nonfinite) or BN_E_CPU when a call failed: the calls before it stay in the
 * cache and bn_ctx_pos is after them. The message is in bn_ctx_last_error. */
int bn_decode(bn_ctx *c, const int32_t *tokens, int32_t n, float *logits);
/* The same with flags BN_DECODE_*. */
int bn_decode_ex(bn_ctx *c, const int32_t *tokens, int32_t n, float *logits, int flags);
/* The size of the first forward call bn_decode makes for n tokens: the largest batch size
 * (up to the ubatch cap) that fits, as bitnet.cpp splits a batch over its kernel
 * templates; a rest below every multi-token size goes in one call, and no call leaves a
 * last call of one token (sizes up to 32, 33 tokens: 31 + 2). The same split gives the
 * same logits, bit for bit. */
int32_t bn_decode_split(const bn_ctx *c, int32_t n);

/* Rows of several sequences for bn_decode_batch (llama.cpp's llama_batch, one sequence a
 * row). */
typedef struct {
	int32_t n;            /* rows, >= 1 */
	const int32_t *token; /* [n] */
	const int32_t *pos;   /* [n] the row's position in its sequence */
	const int32_t *seq;   /* [n] the row's sequence, 0..n_seq-1; NULL: all 0 */
	const int8_t *logits; /* [n] nonzero: the row's logits are wanted; NULL: none */
	/* [n] nonzero: the row is computed as a one-row call computes it, bit for bit (the
	 * reference's step mode), whatever else the call holds; zero: the batch mode. NULL:
	 * the step mode for a one-row batch alone, as bn_decode. */
	const int8_t *step;
} bn_batch;

/* Evaluates the rows of b, each at its position of its sequence, attending to positions
 * 0..pos of its own sequence only. A sequence's rows (in row order; other sequences' rows
 * may come between them) are consecutive positions starting at or below its length: they
 * append, or overwrite from that position on (which first trims the sequence there).
 * logits gets n_vocab floats for each row that wants them, in row order (NULL when none
 * does). The rows go in forward calls of up to bn_ctx_ubatch rows, in row order (a
 * one-row call only for a one-row batch); rows in one call do not change each other's
 * logits, so a row gets the bits it would get with its own sequence's rows alone in a
 * call of several rows, and a row flagged in b->step the bits of a one-row call (the
 * step mode's f16 roundings; without b->step, a one-row batch alone). Returns BN_OK; BN_E_ARG (no rows, a sequence out of
 * range, positions that are not such a run, wanted logits and no buffer), BN_E_TOKEN,
 * BN_E_CTX (a position past n_ctx) before anything runs; BN_E_CANCELLED (bn_ctx_cancel,
 * seen before each forward call), BN_E_NONFINITE (the message and bn_ctx_nonfinite name
 * the row's position; the message its sequence), BN_E_CPU or BN_E_DEVICE when a call
 * failed: the calls before it stay in the cache and each sequence's length is after its
 * rows they decoded. The message is in bn_ctx_last_error. */
int bn_decode_batch(bn_ctx *c, const bn_batch *b, float *logits);

/* ---- profiling ------------------------------------------------------------------ */

/* Where the forwards' time went, per kernel family. The families, in this order: gemv,
 * gemm, amx (ternary matmuls of one token, of several, on the AMX tiles), quant (activation
 * quantization), rmsnorm (alone or fused with the residual add and the quantization),
 * rope, attention (with the KV store), glu, add (residual), embed, head, other (the
 * non-finite checks, the rest), wait (the thread pool's dispatch and its threads' idle
 * time at each kernel's end). */
#define BN_PROFILE_FAMILIES 13
typedef struct {
	const char *family; /* "gemv", ..., "wait" (static) */
	double seconds;     /* summed over the forwards (a pooled kernel: its threads' mean) */
	int64_t calls;      /* kernel calls (wait: pooled calls) */
} bn_profile_row;

/* on != 0: zeroes the counters and times every forward call from now on (a test of a
 * flag per kernel call when off; two clock reads per kernel call and thread when on);
 * 0: stops timing, the counters stay. BN_OK or BN_E_NOMEM. A backend that does not time
 * its kernels (the GPU's) leaves them at zero. */
int bn_ctx_profile(bn_ctx *c, int on);
/* The counters since the last bn_ctx_profile(c, 1): rows gets BN_PROFILE_FAMILIES rows
 * (NULL: not wanted), *forward_s the forwards' wall time, timed apart (the rows add up to
 * it), and *forwards their number (either NULL allowed). BN_OK, or BN_E_ARG when the
 * context was never profiled. */
int bn_ctx_profile_read(const bn_ctx *c, bn_profile_row *rows, double *forward_s,
			int64_t *forwards);

/* ---- tokens and text (a model built with a tokenizer; needs m) ------------------ */

enum {
	BN_TOKENIZE_ADD_BOS = 1,       /* BOS first (when the model has one) */
	BN_TOKENIZE_PARSE_SPECIAL = 2, /* special-token text such as <|eot_id|> is the token */
};

/* BN_OK if m has a usable tokenizer; BN_E_NO_TOKENIZER; or BN_E_TOKENIZER with why in err
 * (only after BN_OPEN_INSPECT). m NULL: BN_OK if the linked model was built with one. */
int bn_model_tokenizer_status(const bn_model *m, char *err, size_t err_len);
/* Encodes the text as the model's tokenizer does, special-token text parsed, with BOS
 * first when add_bos is set and the model has one. Writes up to cap ids; returns how many
 * the text has (more than cap: call again with a larger buffer), or a negative code. */
int32_t bn_tokenize(const bn_model *m, const char *text, int32_t *ids, int32_t cap,
		    int add_bos);
/* The same for len bytes (any bytes: invalid UTF-8 becomes byte tokens) with flags
 * BN_TOKENIZE_*. */
int32_t bn_tokenize_ex(const bn_model *m, const char *text, size_t len, int32_t *ids,
		       int32_t cap, int flags);
/* The bytes of token id (a multi-byte character may be split across tokens); control
 * tokens give their text (bn_token_to_piece_ex: only with special set). Returns the
 * length, which may exceed cap (then cap bytes were written; no NUL is added), or a
 * negative code. */
int32_t bn_token_to_piece(const bn_model *m, int32_t id, char *buf, int32_t cap);
int32_t bn_token_to_piece_ex(const bn_model *m, int32_t id, int special, char *buf,
			     int32_t cap);
/* Ids the tokenizer has text for (an embedding may have more rows); 0 without one. */
int32_t bn_model_n_tokens(const bn_model *m);
/* BOS and EOS: the tokenizer's, else the model's (-1: none). */
int32_t bn_token_bos(const bn_model *m);
int32_t bn_token_eos(const bn_model *m);
/* Whether prompts get BOS (the tokenizer's add_bos_token). */
int bn_model_add_bos(const bn_model *m);
/* Whether id ends generation: EOS or another end-of-generation token (<|eot_id|>). */
int bn_token_is_eog(const bn_model *m, int32_t id);

/* ---- chat ----------------------------------------------------------------------- */

typedef struct {
	const char *role; /* "system", "user", "assistant" */
	const char *content;
} bn_chat_msg;

enum {
	BN_CHAT_ADD_ASSISTANT = 1, /* end with the assistant's prefix, to generate the reply */
	BN_CHAT_CLOSE_REPLY = 2,   /* start with the end of an assistant message (the reply
	                            * before, left open when its end was not decoded) */
};

/* The canonical name ("bitnet", "llama3") of the chat template tmpl names (other tools'
 * names for the same formats included), or with tmpl NULL of the model's built-in one
 * ("none" without); NULL for an unknown name. m may be NULL. */
const char *bn_chat_template_name(const bn_model *m, const char *tmpl);
/* BN_OK if every special token of template tmpl (NULL: the built-in one) is one token of
 * the model's vocabulary; else BN_E_TEMPLATE (or BN_E_NO_TOKENIZER) with why in err. */
int bn_chat_check(const bn_model *m, const char *tmpl, char *err, size_t err_len);
/* The messages as template tmpl (NULL: the built-in one) lays them out, special-token
 * text included (for bn_tokenize_ex with BN_TOKENIZE_PARSE_SPECIAL), flags BN_CHAT_*.
 * Writes up to cap bytes and a NUL when it fits; returns the length, which may be cap or
 * more (call again with a larger buffer), or a negative code. */
int32_t bn_chat_format(const bn_model *m, const char *tmpl, const bn_chat_msg *msgs, int32_t n,
		       int flags, char *buf, int32_t cap);

/* ---- sampling ------------------------------------------------------------------- */

/* llama.cpp's chain and defaults, in this order: repeat penalty (tokens among the last
 * repeat_last_n accepted), then the presence and frequency penalties over the same window
 * (OpenAI's and llama.cpp's: logit -= count * frequency + (count > 0) * presence) -> top-k -> top-p -> min-p -> temperature -> a draw from the
 * softmax. temp <= 0 is greedy: the argmax, ties to the lowest id. */
typedef struct {
	float temp;            /* 0.8; <= 0: greedy */
	int32_t top_k;         /* 40; <= 0: off */
	float top_p;           /* 0.95; >= 1: off */
	float min_p;           /* 0.05; <= 0: off */
	float repeat_penalty;  /* 1.0 (off) */
	int32_t repeat_last_n; /* 64; 0: off */
	uint64_t seed;         /* the random stream; same seed, same draws */
	float presence_penalty;  /* 0 (off) */
	float frequency_penalty; /* 0 (off) */
} bn_sampler_params;

typedef struct bn_sampler bn_sampler;

bn_sampler_params bn_sampler_defaults(void); /* seed 0: pick one with bn_seed_random */
uint64_t bn_seed_random(void);
/* A sampler over the ids m has text for (rows of a padded vocabulary are never picked);
 * NULL when out of memory. m may be NULL: every row. */
bn_sampler *bn_sampler_new(const bn_model *m, const bn_sampler_params *p);
void bn_sampler_free(bn_sampler *s);
/* Picks a token from a row of n_vocab logits (not modified; NaN counts as -inf). */
int32_t bn_sampler_sample(bn_sampler *s, const float *logits);
/* Records a token (prompt or generated) in the repeat-penalty window. */
void bn_sampler_accept(bn_sampler *s, int32_t token);
/* Empties the window (the random stream goes on). */
void bn_sampler_reset(bn_sampler *s);

/* ---- generation ----------------------------------------------------------------- */

enum {
	BN_GEN_IGNORE_EOG = 1, /* an end-of-generation token is generated as any other */
	BN_GEN_SPECIAL = 2,    /* control tokens give their text (else none) */
	/* invalid UTF-8 goes to on_text as the tokens give it (an unfinished character at
	 * the end too), not as U+FFFD: the generated program's output */
	BN_GEN_RAW_TEXT = 4,
	/* the token that reaches max_tokens is not decoded (its logits would go unused):
	 * one forward call less, and bn_ctx_pos ends one short of the text. The program
	 * does this unless --logits-out asks for the row */
	BN_GEN_SKIP_LAST = 8,
	/* on_logits gets every row of the prompt as well (the prompt decoded call by call,
	 * as bn_decode_split gives them), not only its last */
	BN_GEN_PROMPT_LOGITS = 16,
};

typedef struct {
	int32_t max_tokens; /* -1: until an end of generation or the context is full */
	int flags;          /* BN_GEN_* */
	/* stop strings: generation stops once the text holds one; it and what follows it
	 * are not given to on_text. Empty strings are ignored. */
	const char *const *stop;
	int32_t n_stop;
	/* The text as it is decided: whole UTF-8 characters only (a character split across
	 * tokens waits for its end; an invalid one, or one unfinished at the end, becomes
	 * U+FFFD), and text that may begin a stop string held back until it cannot. Return
	 * nonzero to stop (BN_STOP_CALLBACK). NULL: no text (nor a tokenizer) needed unless
	 * there are stop strings. */
	int (*on_text)(void *user, const char *text, size_t len);
	/* Each generated token, before its text (optional; nonzero stops). */
	int (*on_token)(void *user, int32_t token);
	/* Each logits row the generation decodes (optional; nonzero stops): the prompt's
	 * last (all of them with BN_GEN_PROMPT_LOGITS, in n rows of n_vocab per call), then
	 * one per generated token decoded. */
	int (*on_logits)(void *user, const float *rows, int32_t n);
	void *user;
} bn_generate_params;

enum {
	BN_STOP_EOG = 1,         /* an end-of-generation token (not emitted, not decoded) */
	BN_STOP_MAX_TOKENS = 2,  /* max_tokens generated */
	BN_STOP_CTX_FULL = 3,    /* the last token generated did not fit the context to be
	                          * decoded (it was emitted) */
	BN_STOP_STRING = 4,      /* a stop string */
	BN_STOP_CALLBACK = 5,    /* a callback returned nonzero */
	BN_STOP_CANCELLED = 6,   /* bn_ctx_cancel (the call returns BN_E_CANCELLED) */
	BN_STOP_ERROR = 7,       /* a decode failed (the call returns its code) */
};

typedef struct {
	int32_t n_prompt;    /* prompt tokens decoded (all, unless it was stopped there) */
	int32_t n_generated; /* tokens generated and emitted (an EOG that stops is not) */
	int32_t n_decoded;   /* of those, the ones decoded into the cache */
	int stop;            /* BN_STOP_* */
	double prompt_s;     /* seconds decoding the prompt */
	double gen_s;        /* seconds decoding the generated tokens */
} bn_generate_result;

/* max_tokens -1, no flags, no stop strings, no callbacks. */
bn_generate_params bn_generate_defaults(void);
/* Appends the prompt (n_prompt >= 1 tokens) at bn_ctx_pos(c), recording it in the
 * sampler's repeat-penalty window, then generates: sample from the last logits row,
 * record, emit (on_token, on_text), decode, one token a step, as the generated program
 * does. A sampled end-of-generation token stops it (not emitted, not decoded); so do a
 * stop string and a callback (the token that completed it stays undecoded); at
 * max_tokens the last token is decoded (BN_GEN_SKIP_LAST: not). Text held back is given
 * to on_text when generation ends, except after BN_STOP_CALLBACK. r (may be NULL) gets
 * the counts, the reason and the times even on failure. Returns BN_OK; BN_E_ARG;
 * BN_E_NO_TOKENIZER / BN_E_TOKENIZER (text asked of a model without a usable one);
 * BN_E_CANCELLED; bn_decode's codes (BN_E_CTX: the prompt does not fit). The message is
 * in bn_ctx_last_error. Needs n_vocab floats (ubatch rows with BN_GEN_PROMPT_LOGITS). */
int bn_generate(bn_ctx *c, bn_sampler *s, const int32_t *prompt, int32_t n_prompt,
		const bn_generate_params *p, bn_generate_result *r);

/* ---- chat turns ----------------------------------------------------------------- */

/* A conversation over one context: each turn evaluates only its own tokens after the
 * ones before, as the program's -cnv does (the reply's end of message, when its end was
 * not decoded, goes in front of the next turn; BOS and the system message at the start).
 * Between turns the conversation owns the context: bn_chat_reset (or bn_ctx_reset, which
 * leaves the sampler's window as it is) starts a new one. */
typedef struct bn_chat bn_chat;

/* A conversation on c with sampler s (both the caller's, used by every turn, and
 * outliving it), chat template tmpl (NULL: the built-in one) and a system message (NULL
 * or "": none; copied). Its first turn starts as bn_chat_reset does. NULL on failure, with the code in *code (may be NULL):
 * BN_E_ARG, BN_E_NOMEM, BN_E_NO_TOKENIZER or BN_E_TEMPLATE (bn_chat_check's), why in err. */
bn_chat *bn_chat_new(bn_ctx *c, bn_sampler *s, const char *tmpl, const char *system,
		     int *code, char *err, size_t err_len);
void bn_chat_free(bn_chat *ch);
/* Starts a new conversation: the context back to position 0, the sampler's window
 * emptied. */
void bn_chat_reset(bn_chat *ch);
/* Formats and encodes the user's next turn (the first of a conversation: BOS and the
 * system message before it) for bn_chat_reply; *n_tokens (may be NULL) gets its length.
 * When the turn and one reply token do not fit after the conversation, it starts a new
 * one first and sets *restarted (may be NULL). BN_OK; BN_E_CTX when the turn does not fit
 * even an empty context (the conversation was started over, the turn is dropped);
 * BN_E_NOMEM; the tokenizer's codes. */
int bn_chat_prepare(bn_chat *ch, const char *user, int32_t *n_tokens, int *restarted);
/* Evaluates the prepared turn and generates the reply (bn_generate with p; NULL: the
 * defaults). A turn whose tokens were not all decoded (cancelled, failed) is taken back:
 * the cache is as it was before it (the sampler's window keeps them). After
 * BN_STOP_CTX_FULL the next turn starts a new conversation. BN_E_ARG when no turn is
 * prepared; else bn_generate's codes. */
int bn_chat_reply(bn_chat *ch, const bn_generate_params *p, bn_generate_result *r);
/* bn_chat_prepare then bn_chat_reply. */
int bn_chat_turn(bn_chat *ch, const char *user, const bn_generate_params *p,
		 bn_generate_result *r);

#ifdef __cplusplus
}
#endif

#endif
