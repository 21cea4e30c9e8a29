/* frontend.h - reading models: the GGUF container (mmap reader and writer), the
 * BitNet architectures lowered to the graph IR, and the synthetic model generator. */
#ifndef BITNETC_FRONTEND_H
#define BITNETC_FRONTEND_H

#include "ir.h"

/* ---- GGUF (gguf.c) ----------------------------------------------------- */

typedef enum {
	GGUF_T_U8 = 0,
	GGUF_T_I8 = 1,
	GGUF_T_U16 = 2,
	GGUF_T_I16 = 3,
	GGUF_T_U32 = 4,
	GGUF_T_I32 = 5,
	GGUF_T_F32 = 6,
	GGUF_T_BOOL = 7,
	GGUF_T_STRING = 8,
	GGUF_T_ARRAY = 9,
	GGUF_T_U64 = 10,
	GGUF_T_I64 = 11,
	GGUF_T_F64 = 12,
	GGUF_T_COUNT
} GgufType;

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

/* A string inside the file: not NUL-terminated. */
typedef struct {
	const char *ptr;
	uint64_t len;
} GgufStr;

/* A metadata value or an array element: a view into the mapping. */
typedef struct {
	GgufType type;
	GgufType arr_type;       /* GGUF_T_ARRAY: element type */
	uint64_t arr_n;          /* GGUF_T_ARRAY: element count */
	const uint8_t *data;     /* scalar: its bytes; string: the length prefix; array: first element */
	uint64_t size;           /* bytes from data to the end of the value */
	const uint64_t *elem_off; /* arrays of strings/arrays: offset of element i from data */
} GgufValue;

typedef struct {
	char *key; /* NUL-terminated copy */
	GgufValue val;
} GgufKV;

typedef struct {
	char *name; /* NUL-terminated copy */
	int n_dims;
	int64_t ne[GGUF_MAX_DIMS]; /* unused dims are 1 */
	uint32_t ggml_type;
	IrDtype dtype;
	uint64_t offset;  /* relative to the data section */
	uint64_t nbytes;
	const void *data; /* inside the mapping */
} GgufTensor;

typedef struct {
	char *path; /* as given; used in every error */
	uint32_t version;
	uint64_t alignment;
	const uint8_t *base; /* the mapped file (or caller's buffer) */
	uint64_t size;
	bool mapped;
	uint64_t dev, ino; /* the mapped file's device and inode (gguf_open; else 0) */
	uint64_t n_kv;
	GgufKV *kv;
	uint64_t n_tensors;
	GgufTensor *tensors;
	uint64_t data_offset; /* file offset of the data section */
} GgufFile;

/* Maps and parses path. Every count, offset, size and length is checked against the
 * file; errors read "PATH: FIELD: problem". */
GgufFile *gguf_open(const char *path, BnErr *e);
/* Parses a buffer the caller keeps alive for the file's lifetime (no copy). */
GgufFile *gguf_open_mem(const void *buf, uint64_t size, const char *name, BnErr *e);
void gguf_close(GgufFile *f);

const GgufKV *gguf_find(const GgufFile *f, const char *key);
const GgufTensor *gguf_find_tensor(const GgufFile *f, const char *name);
const char *gguf_type_name(GgufType t);

/* Typed reads with conversion; return false if the value has another kind
 * (or, for ints, does not fit). Integers: any integer type or bool. Floats: f32, f64
 * or any integer. */
bool gguf_value_int(const GgufValue *v, int64_t *out);
bool gguf_value_float(const GgufValue *v, double *out);
bool gguf_value_str(const GgufValue *v, GgufStr *out);
/* Element i of an array value as a value of its own (nested arrays included). */
bool gguf_value_elem(const GgufValue *v, uint64_t i, GgufValue *out);

/* Shortcuts on a key; false if missing or of another kind. */
bool gguf_get_int(const GgufFile *f, const char *key, int64_t *out);
bool gguf_get_float(const GgufFile *f, const char *key, double *out);
bool gguf_get_str(const GgufFile *f, const char *key, GgufStr *out);
/* A printable rendering of a value (strings quoted, long arrays abbreviated). */
void gguf_value_print(const GgufValue *v, FILE *out, int max_elems);

/* Writer: collects metadata and tensors, then writes a GGUF v3 file that the reader
 * and the reference tools accept. Tensor data is not copied: it must stay valid until
 * gguf_writer_write. general.alignment (if set, u32) is honoured. */
typedef struct GgufWriter GgufWriter;
GgufWriter *gguf_writer_new(void);
void gguf_writer_free(GgufWriter *w);
void gguf_writer_u32(GgufWriter *w, const char *key, uint32_t v);
void gguf_writer_i32(GgufWriter *w, const char *key, int32_t v);
void gguf_writer_u64(GgufWriter *w, const char *key, uint64_t v);
void gguf_writer_f32(GgufWriter *w, const char *key, float v);
void gguf_writer_bool(GgufWriter *w, const char *key, bool v);
void gguf_writer_str(GgufWriter *w, const char *key, const char *v);
/* Arrays of scalars: elem_type is a scalar GgufType; data holds n packed elements. */
void gguf_writer_arr(GgufWriter *w, const char *key, GgufType elem_type, const void *data,
		     uint64_t n);
void gguf_writer_arr_str(GgufWriter *w, const char *key, const char *const *strs, uint64_t n);
/* Any value, including nested arrays, from raw GGUF-encoded bytes (type + payload as
 * they appear after the key). For tests of exotic files. */
void gguf_writer_raw(GgufWriter *w, const char *key, GgufType type, const void *payload,
		     uint64_t payload_size);
int gguf_writer_tensor(GgufWriter *w, const char *name, uint32_t ggml_type, int n_dims,
		       const int64_t *ne, const void *data, uint64_t nbytes, BnErr *e);
int gguf_writer_write(GgufWriter *w, const char *path, BnErr *e);

/* ---- BitNet architectures -> IR (bitnet.c) ------------------------------ */

/* Builds the graph of a bitnet-b1.58, bitnet-25 or bitnet model. Unknown arch,
 * missing tensor, wrong shape or unsupported type: NULL and a clear error. */
IrGraph *bnm_load(const GgufFile *f, BnErr *e);
/* Reads the hyperparameters only (also used by inspect). */
int bnm_hparams(const GgufFile *f, IrHparams *hp, BnErr *e);
/* Names of the supported architectures, NULL-terminated. */
const char *const *bnm_archs(void);
/* Whether name is a projection weight (blk.N.attn_q.weight, ... ffn_down.weight): a tensor
 * the int8 x ternary kernels read. Such tensors in f32, f16 or bf16 (bnm_float_projection)
 * are ternarized when the graph is built, as the reference's converter and I2_S quantizer
 * make them (ir_ternarize), and become I2_S constants in the graph's arena. */
bool bnm_is_projection(const char *name);
bool bnm_float_projection(const GgufTensor *t);

/* ---- ternary re-quantization (quantize.c) ------------------------------- */

typedef struct {
	int n_proj;    /* projection weights written in the target format */
	int n_float;   /* of those, how many were f32, f16 or bf16 */
	int n_absmean; /* of those, how many took the absmean rule (not already ternary) */
	int n_copied;  /* other tensors, copied as they are */
} BnmQuantStats;

/* Writes f as a GGUF at out with every projection weight (bnm_is_projection, as the graph
 * reads it) ternarized by ir_ternarize and packed in `to` (I2_S, TQ1_0 or TQ2_0); all
 * metadata (general.file_type updated) and every other tensor are copied as they are.
 * The model must load (bnm_load): nothing is written otherwise. out must not be f's file;
 * it is written beside itself and renamed into place, so a failure leaves no half file. */
int bnm_quantize(const GgufFile *f, const char *out, IrDtype to, BnmQuantStats *st, BnErr *e);
/* Whether both paths exist and are the same file (device and inode). */
bool bnm_same_file(const char *a, const char *b);

/* ---- tokenizer metadata (tokmeta.c) ------------------------------------- */

/* A GGUF's tokenizer, built into the runtime's blob (rt_tok.h), and its chat template. */
typedef struct {
	void *blob;          /* rt_tok_build's blob (malloc'd); NULL: no tokenizer */
	size_t size;
	char none_why[128];  /* why there is none (no tokenizer.ggml.model, unknown kind) */
	const char *kind;    /* "gpt2" or "llama" */
	int32_t n_tokens, bos, eos;
	bool add_bos;
	int32_t eog[8];      /* end-of-generation ids besides eos */
	int n_eog;
	int chat_template;   /* RtChatTemplate recognized in tokenizer.chat_template; 0: none */
	bool has_chat_jinja; /* the file has a tokenizer.chat_template */
	bool chat_from_pre;  /* none, and chat_template follows from the pre-tokenizer */
	char split[160];     /* BPE: how text is split into words and why ("the Llama 3 split
			      * (tokenizer.ggml.pre 'llama-bpe')", "the Falcon 3 split (...)");
			      * "" for SentencePiece */
} BnmTok;

/* Reads tokenizer.ggml.* ("gpt2": tokens, token_type, merges; "llama": tokens, scores,
 * token_type), bos/eos/add_bos, the end-of-generation ids, and tokenizer.chat_template.
 * No tokenizer.ggml.model (or another kind): BN_OK, blob NULL and none_why says so.
 * Malformed metadata: an error naming the file and key. */
int bnm_tok_load(const GgufFile *f, BnmTok *t, BnErr *e);
/* The same; a BPE vocabulary's tokenizer.ggml.pre must be one bnm_tok_pre_supported names
 * (others split text differently: BN_EUNSUPPORTED, listing them) unless force_pre (such a
 * name, or NULL) overrides it. */
int bnm_tok_load_pre(const GgufFile *f, const char *force_pre, BnmTok *t, BnErr *e);
/* The tokenizer.ggml.pre values whose split the runtime implements (Llama 3's or Falcon
 * 3's), NULL-terminated; the first is the one to suggest. */
const char *const *bnm_tok_pres(void);
/* "a, b, c" of bnm_tok_pres, for a message. */
void bnm_tok_pres_list(char *buf, size_t n);
bool bnm_tok_pre_supported(const char *pre);
/* "Llama 3" or "Falcon 3": the split a supported pre names, for messages. */
const char *bnm_tok_split_name(const char *pre);
/* Whether the vocabulary has, as special tokens, what chat_template's text holds (e.g.
 * <|start_header_id|> for llama3); else nonzero and why says which are missing. No
 * tokenizer or no template: 0. */
int bnm_tok_chat_check(const BnmTok *t, int chat_template, char *why, size_t n);
void bnm_tok_free(BnmTok *t);

/* ---- synthetic models (synth.c) ---------------------------------------- */

typedef struct {
	const char *arch; /* "bitnet-b1.58" (default), "bitnet-25", "bitnet" or "llama" */
	int64_t n_layer, n_embd, n_ff, n_head, n_head_kv, n_vocab, n_ctx;
	float eps, rope_base;
	IrDtype wtype;      /* ternary format: I2_S, TQ1_0, TQ2_0, or F16, BF16, F32 (the ternary
			     * values unquantized) */
	IrDtype embd_type;  /* F16 (default), F32, BF16, Q8_0, Q6_K */
	uint64_t seed;
	const char *vocab_dir; /* NULL: synthetic byte-level vocab; else a folder with tokens.txt,
				* merges.txt and special.tsv (the Llama 3 vocabulary, uncompressed) */
	bool proj_scales;      /* arch "bitnet": write blk.N.*.scale tensors */
	bool spm_vocab;        /* a small SentencePiece ("llama") vocabulary instead, as the
				* 1bitLLM models carry */
	bool untied_head;      /* arch "llama": write output.weight (embd_type) after the layers */
	bool proj_bias;        /* write blk.N.<proj>.bias (F32) after every projection */
	bool rope_freqs;       /* write rope_freqs.weight: Llama 3.1's long-context factors */
	const char *pre;       /* BPE: tokenizer.ggml.pre to write, and then no add_bos_token nor
				* chat template (the readers' defaults for it apply); NULL: the
				* usual metadata */
} BnmSynthSpec;

/* Fills spec for a named shape: "tiny", "tinyold", "tinyllama" (the golden shapes) or
 * "2b4t". */
int bnm_synth_shape(BnmSynthSpec *s, const char *shape, BnErr *e);
int bnm_synth_write(const BnmSynthSpec *s, const char *path, BnErr *e);
/* The tokens of vocabulary directory dir (tokens.txt + special.tsv): a --vocab-dir model's
 * n_vocab unless one is given. */
int bnm_synth_vocab_size(const char *dir, int64_t *n, BnErr *e);

#endif
