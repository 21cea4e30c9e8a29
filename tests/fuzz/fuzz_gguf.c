/* fuzz_gguf.c - libFuzzer harness: arbitrary bytes through gguf_open_mem and every accessor. */
#include "frontend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *devnull; /* gguf_value_print's output; opened once */

/* Aborts (a crash libFuzzer reports) if [p, p+n) is not inside the input: the reader
 * promises views into the buffer, which the sanitizers alone would not check. */
static void inside(const GgufFile *f, const void *p, uint64_t n)
{
	const uint8_t *b = p;
	if (b < f->base || b > f->base + f->size || n > (uint64_t)(f->base + f->size - b))
		abort();
}

static void walk(const GgufFile *f, const GgufValue *v)
{
	int64_t i;
	double d;
	GgufStr s;
	GgufValue el;
	volatile uint8_t sink = 0;
	(void)gguf_value_int(v, &i);
	(void)gguf_value_float(v, &d);
	(void)gguf_type_name(v->type);
	inside(f, v->data, v->size);
	if (gguf_value_str(v, &s)) {
		inside(f, s.ptr, s.len);
		if (s.len)
			sink = (uint8_t)s.ptr[s.len - 1];
	}
	if (v->type != GGUF_T_ARRAY)
		return;
	for (uint64_t k = 0; k < v->arr_n; k++) {
		if (!gguf_value_elem(v, k, &el))
			abort();
		walk(f, &el);
	}
	if (gguf_value_elem(v, v->arr_n, &el))
		abort();
	(void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!devnull && !(devnull = fopen("/dev/null", "w")))
		abort();
	BnErr e = {0};
	GgufFile *f = gguf_open_mem(data, size, "fuzz.gguf", &e);
	if (!f) {
		if (!e.code || !e.msg[0])
			abort(); /* every failure explains itself */
		return 0;
	}
	for (uint64_t i = 0; i < f->n_kv; i++) {
		const GgufKV *kv = &f->kv[i];
		int64_t iv;
		double dv;
		GgufStr sv;
		if (gguf_find(f, kv->key) != kv) /* keys are unique */
			abort();
		(void)gguf_get_int(f, kv->key, &iv);
		(void)gguf_get_float(f, kv->key, &dv);
		(void)gguf_get_str(f, kv->key, &sv);
		walk(f, &kv->val);
		gguf_value_print(&kv->val, devnull, 4);
		gguf_value_print(&kv->val, devnull, -1);
		fputc('\n', devnull);
	}
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		const GgufTensor *t = &f->tensors[i];
		if (gguf_find_tensor(f, t->name) != t || !t->name[0])
			abort();
		if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS || t->nbytes == 0 ||
		    t->offset % f->alignment)
			abort();
		inside(f, t->data, t->nbytes);
		volatile uint8_t sink = ((const uint8_t *)t->data)[t->nbytes - 1];
		(void)sink;
	}
	if (f->alignment == 0 || (f->alignment & (f->alignment - 1)))
		abort();
	gguf_close(f);
	return 0;
}
