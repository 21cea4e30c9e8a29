/* cg_output.c - what a backend's emit produces: named artifacts (sources, headers,
 * binaries) and the payload plan, and writing them into the build's source directory. */
#include "cg.h"

#include "rt_batch.h"

#include <inttypes.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

CgBuf *cg_output_add(CgOutput *o, const char *name, CgArtifactKind kind)
{
	size_t len = strlen(name);
	if (!len || len >= sizeof o->art[0].name || strchr(name, '/') || !strcmp(name, ".") ||
	    !strcmp(name, "..") || cg_output_find(o, name))
		return NULL;
	if (o->n_art == o->cap_art) {
		int cap = o->cap_art ? 2 * o->cap_art : 4;
		CgArtifact *a = realloc(o->art, (size_t)cap * sizeof *a);
		if (!a)
			return NULL;
		o->art = a;
		o->cap_art = cap;
	}
	CgArtifact *a = &o->art[o->n_art++];
	memset(a, 0, sizeof *a);
	memcpy(a->name, name, len + 1);
	a->kind = kind;
	return &a->bytes;
}

const CgArtifact *cg_output_find(const CgOutput *o, const char *name)
{
	for (int i = 0; i < o->n_art; i++)
		if (strcmp(o->art[i].name, name) == 0)
			return &o->art[i];
	return NULL;
}

void cg_output_free(CgOutput *o)
{
	for (int i = 0; i < o->n_art; i++)
		cg_buf_free(&o->art[i].bytes);
	free(o->art);
	o->art = NULL;
	o->n_art = o->cap_art = 0;
	free(o->payload.ids);
	free(o->payload.off);
	o->payload.ids = NULL;
	o->payload.off = NULL;
}

int cg_write_file(const char *dir, const char *name, const void *data, size_t n, BnErr *e)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	/* never through a symbolic link: it would write wherever that points */
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0666);
	FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
	if (!f) {
		int err = errno;
		if (fd >= 0)
			close(fd);
		return bn_err(e, BN_EIO, "%s: cannot create: %s", path, strerror(err));
	}
	size_t w = n ? fwrite(data, 1, n, f) : 0;
	int err = w != n ? errno : 0;
	if (fclose(f) != 0 && !err)
		err = errno;
	if (w != n || err)
		return bn_err(e, BN_EIO, "%s: cannot write: %s", path, strerror(err ? err : EIO));
	return 0;
}

int cg_sources_write(const CgBackend *b, const char *dir, const CgOutput *out, BnErr *e)
{
	for (int i = 0; i < out->n_art; i++) {
		const CgArtifact *a = &out->art[i];
		if (cg_write_file(dir, a->name, a->bytes.data, a->bytes.len, e))
			return e ? e->code : BN_EIO;
	}
	int n = 0;
	const CgSource *rt = b->runtime ? b->runtime(&n) : NULL;
	for (int i = 0; rt && i < n; i++)
		if (cg_write_file(dir, rt[i].name, rt[i].data, rt[i].size, e))
			return e ? e->code : BN_EIO;
	return 0;
}

void cg_put_model_facts(CgBuf *b, const IrGraph *g, const CgOpts *o, const CgOutput *out,
			int n_bs)
{
	cg_printf(b, ",\n\t.version = \"%s\",\n"
		     "\t.info = model_info,\n"
		     "\t.n_vocab = %" PRId64 ",\n"
		     "\t.n_ctx_train = %" PRId64 ",\n"
		     "\t.n_layer = %" PRId64 ",\n"
		     "\t.n_embd = %" PRId64 ",\n"
		     "\t.bos = %" PRId64 ",\n"
		     "\t.eos = %" PRId64 ",\n"
		     "\t.tok_offset = %" PRIu64 "u,\n"
		     "\t.tok_bytes = %" PRIu64 "u,\n"
		     "\t.chat_template = %d,\n"
		     "\t.weights_bytes = %" PRIu64 "u,\n"
		     "\t.weights_hash = 0x%016" PRIx64 "u,\n"
		     "\t.max_batch = MAX_BATCH,\n"
		     "\t.batch_sizes = batch_sizes,\n"
		     "\t.n_batch_sizes = %d,\n"
		     "\t.scratch_bytes = %" PRIu64 "u,\n"
		     "\t.kv_bytes = kv_bytes,\n"
		     "\t.decode = decode,\n",
		  BITNETC_VERSION, g->hp.n_vocab, g->hp.n_ctx_train, g->hp.n_layer, g->hp.n_embd,
		  o->bos, o->eos, out->payload.tok_off, out->payload.tok_bytes, o->chat_template,
		  out->payload.size, out->payload.hash, n_bs, out->scratch_bytes);
}

void cg_put_cstr(CgBuf *b, const char *s, size_t n)
{
	cg_printf(b, "\"");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			cg_printf(b, "\\%c", c);
		else if (c == '\n')
			cg_printf(b, "\\n\"\n\t\"");
		else if (c < 0x20 || c >= 0x7f || c == '?') /* '?': no trigraphs */
			cg_printf(b, "\\%03o", c);
		else
			cg_printf(b, "%c", c);
	}
	cg_printf(b, "\"");
}

int cg_batch_templates(const CgOpts *o, int two[2], const int **bs, int *n_bs, BnErr *e)
{
	if (!rt_max_batch_ok(o->max_batch))
		return bn_err(e, BN_EINVAL, "codegen: max_batch %d out of range (1..%d)",
			      o->max_batch, RT_MAX_BATCH);
	two[0] = 1;
	two[1] = o->max_batch;
	*bs = o->batch_sizes ? o->batch_sizes : two;
	*n_bs = o->batch_sizes ? o->n_batch_sizes : o->max_batch > 1 ? 2 : 1;
	if (!rt_batch_sizes_ok(*bs, *n_bs, o->max_batch))
		return bn_err(e, BN_EINVAL, "codegen: batch sizes must start at 1, ascend and end at "
					    "max_batch %d (%d sizes given)",
			      o->max_batch, *n_bs);
	return 0;
}
