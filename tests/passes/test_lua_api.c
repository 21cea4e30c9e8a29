/* test_lua_api.c - the Lua graph API, driven by small Lua passes on a golden model: counts,
 * name matching, attributes both ways, layouts, ternary statistics, handle lifetimes,
 * the target table and the pass list; the libraries of the sandbox and of --lua-unsafe. */
#include "testutil.h"
#include "frontend.h"
#include "pass.h"

#include <stdlib.h>
#include <string.h>

static GgufFile *file;

static int setup(void **state)
{
	(void)state;
	BnErr e = {0};
	file = gguf_open(tu_data("golden/models/tiny-b158-i2_s.gguf"), &e);
	if (!file)
		fail_msg("%s", e.msg);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	gguf_close(file);
	return 0;
}

static IrGraph *graph(void)
{
	BnErr e = {0};
	IrGraph *g = bnm_load(file, &e);
	if (!g)
		fail_msg("%s", e.msg);
	return g;
}

static void drop(IrGraph *g)
{
	pass_gattr_clear(g);
	ir_graph_free(g);
}

/* Runs body as the one Lua pass of a pipeline on g; name names the script file. */
static int snippet(IrGraph *g, const char *name, const char *body, const PassRunOpts *ro,
		   BnErr *e)
{
	char text[8192];
	snprintf(text, sizeof text,
		 "local bitnetc = require('bitnetc')\n"
		 "local p = bitnetc.pipeline()\n"
		 "p:add(function(g)\n%s\nend)\n"
		 "return p\n",
		 body);
	const char *path = tu_tmp_text(name, text);
	memset(e, 0, sizeof *e);
	return pass_pipeline_run(g, path, ro, e);
}

static void ok(IrGraph *g, const char *name, const char *body)
{
	BnErr e;
	if (snippet(g, name, body, NULL, &e))
		fail_msg("%s: %s", name, e.msg);
}

static int64_t gint(const IrGraph *g, const char *key)
{
	const IrAttr *a = pass_gattr_find(g, key);
	if (!a || a->type != IR_ATTR_INT)
		fail_msg("graph attribute %s missing or not an int", key);
	return a->i;
}

static void test_counts(void **state)
{
	(void)state;
	IrGraph *g = graph();
	ok(g, "la_counts.lua",
	   "local nn, nv, consts = 0, 0, 0\n"
	   "for n in g:nodes() do nn = nn + 1 end\n"
	   "for v in g:values() do nv = nv + 1; if v.kind == 'const' then consts = consts + 1 end end\n"
	   "assert(nn == g.n_nodes and nv == g.n_values)\n"
	   "g:set_attr('nodes', nn); g:set_attr('values', nv); g:set_attr('consts', consts)\n"
	   "assert(g.arch == 'bitnet-b1.58' and g.hp.n_layer == 4 and g.hp.n_embd == 256)\n"
	   "assert(g.logits.shape[1] == g.hp.n_vocab and g.logits.shape[2] == 'T')\n"
	   "assert(g.tokens.kind == 'input' and g.tokens.dtype == 'i32')\n"
	   "assert(tostring(g):find('nodes'))\n");
	assert_int_equal(gint(g, "nodes"), g->n_nodes);
	assert_int_equal(gint(g, "values"), g->n_values);
	int consts = 0;
	for (int i = 0; i < g->n_values; i++)
		consts += g->values[i].kind == IR_VAL_CONST;
	assert_int_equal(gint(g, "consts"), consts);
	drop(g);
}

static void test_match(void **state)
{
	(void)state;
	IrGraph *g = graph();
	ok(g, "la_match.lua",
	   "local w = g:match('blk.*.ffn_down.weight')\n"
	   "assert(#w == 4, #w)\n"
	   "for i, v in ipairs(w) do\n"
	   "  assert(v.name == 'blk.' .. (i - 1) .. '.ffn_down.weight', v.name)\n"
	   "  assert(v.kind == 'const' and v.dtype == 'i2_s' and v.layout == 'gguf' and v.ternary)\n"
	   "  assert(v.shape[1] == 768 and v.shape[2] == 256 and #v.shape == 2)\n"
	   "  assert(v.nbytes == 768 * 256 // 4 + 32)\n"
	   "  assert(v.producer == nil)\n"
	   "  local users = v:users()\n"
	   "  assert(#users == 1 and users[1].op == 'ternary_matmul')\n"
	   "  assert(users[1].inputs[3] == v)\n"
	   "end\n"
	   "assert(#g:match('blk.1.*') > 5)\n"
	   "assert(#g:match('nothing*') == 0)\n"
	   "local nodes = g:match_nodes('blk.*.ffn_down')\n"
	   "assert(#nodes == 4 and nodes[1].name == 'blk.0.ffn_down')\n"
	   "local n = nodes[1]\n"
	   "assert(n.op == 'ternary_matmul' and #n.inputs == 3 and #n.outputs == 1)\n"
	   "assert(n.outputs[1].producer == n)\n"
	   "assert(n.outputs[1].shape[2] == 'T')\n"
	   "assert(g:node(n.id) == n and g:node('blk.0.ffn_down') == n)\n"
	   "assert(g:node('no such node') == nil and g:value(-1) == nil)\n"
	   "assert(tostring(n):find(\"'blk.0.ffn_down' %(ternary_matmul%)\"))\n");
	drop(g);
}

/* Attributes round trip: set in Lua, read in C and back in Lua; graph attributes too. */
static void test_attrs(void **state)
{
	(void)state;
	IrGraph *g = graph();
	ok(g, "la_attrs.lua",
	   "local n = g:node('blk.0.attn_norm')\n"
	   "assert(math.type(n:attr('eps')) == 'float' and n.attrs.eps == n:attr('eps'))\n"
	   "assert(n:attr('missing') == nil)\n"
	   "local q = g:node('blk.0.attn_norm.q8')\n"
	   "assert(q:attr('mode') == 'token')\n"
	   "local m = g:node('blk.1.ffn_down')\n"
	   "m:set_attr('kernel', 'lut3')\n"
	   "m:set_attr('tile', {16, 4})\n"
	   "m:set_attr('unroll', 4)\n"
	   "m:set_attr('ratio', 0.5)\n"
	   "m:set_attr('kernel', 'lut2')\n"
	   "assert(m:attr('kernel') == 'lut2' and m:attr('unroll') == 4)\n"
	   "assert(math.type(m:attr('unroll')) == 'integer' and m:attr('ratio') == 0.5)\n"
	   "local t = m:attr('tile'); assert(#t == 2 and t[1] == 16 and t[2] == 4)\n"
	   "local ok, err = pcall(m.set_attr, m, 'bad', true)\n"
	   "assert(not ok and err:find('attribute bad'), err)\n"
	   "ok, err = pcall(m.set_attr, m, 'bad', {1, 'x'})\n"
	   "assert(not ok and err:find('list of integers'), err)\n"
	   "g:set_attr('note', 'hello'); g:set_attr('list', {3, 2, 1})\n"
	   "assert(g:attr('note') == 'hello' and g:attr('list')[3] == 1 and g:attr('x') == nil)\n");
	IrNode *m = NULL;
	for (int i = 0; i < g->n_nodes; i++)
		if (strcmp(g->nodes[i].name, "blk.1.ffn_down") == 0)
			m = &g->nodes[i];
	assert_non_null(m);
	assert_string_equal(ir_attr_str(m, "kernel", ""), "lut2");
	assert_int_equal(ir_attr_int(m, "unroll", 0), 4);
	assert_true(ir_attr_float(m, "ratio", 0) == 0.5);
	const IrAttr *t = ir_attr_find(m, "tile");
	assert_non_null(t);
	assert_int_equal(t->type, IR_ATTR_INTS);
	assert_int_equal(t->n_ints, 2);
	assert_int_equal(t->ints[0], 16);
	const IrAttr *note = pass_gattr_find(g, "note");
	assert_non_null(note);
	assert_string_equal(note->s, "hello");
	int n = 0;
	pass_gattr_list(g, &n);
	assert_int_equal(n, 2);
	BnErr e = {0};
	assert_int_equal(ir_verify(g, &e), BN_OK);
	drop(g);
}

/* Layout tags and op variants: the edits land in the graph, which still verifies. */
static void test_edits(void **state)
{
	(void)state;
	IrGraph *g = graph();
	ok(g, "la_edits.lua",
	   "for _, v in ipairs(g:match('blk.*.attn_q.weight')) do v:set_layout('i2s_x16') end\n"
	   "assert(g:value('blk.2.attn_q.weight').layout == 'i2s_x16')\n"
	   "local ok, err = pcall(function() g:value('blk.0.attn_k.weight'):set_layout('a b') end)\n"
	   "assert(not ok and err:find('la_edits.lua:6:') and err:find('layout'), err)\n"
	   "local n = g:node('blk.0.ffn_out')\n"
	   "assert(n.op == 'relu2_glu'); n:set_op('silu_glu'); assert(n.op == 'silu_glu')\n"
	   "ok, err = pcall(n.set_op, n, 'frobnicate')\n"
	   "assert(not ok and err:find(\"no IR op named 'frobnicate'\"), err)\n"
	   "local st0 = g:value('blk.0.attn_k.weight'):ternary_stats()\n"
	   "ok, err = pcall(function() g:value('blk.0.attn_k.weight'):set_layout('x99') end)\n"
	   "assert(not ok and err:find('unknown layout'), err)\n"
	   "ok, err = pcall(function() g:value('token_embd.weight'):set_layout('i2s_x16') end)\n"
	   "assert(not ok and err:find('layout of i2_s weights'), err)\n"
	   "g:value('blk.0.attn_k.weight'):set_layout('i2s_x16')\n"
	   "local st1 = g:value('blk.0.attn_k.weight'):ternary_stats()\n"
	   "assert(st0.neg == st1.neg and st0.zero == st1.zero and st0.pos == st1.pos)\n");
	int tagged = 0;
	for (int i = 0; i < g->n_values; i++)
		if (strcmp(g->values[i].layout, "i2s_x16") == 0 &&
		    !strstr(g->values[i].name, "blk.0.attn_k.")) {
			assert_non_null(strstr(g->values[i].name, ".attn_q.weight"));
			tagged++;
		}
	assert_int_equal(tagged, 4);
	bool silu = false;
	for (int i = 0; i < g->n_nodes; i++)
		if (strcmp(g->nodes[i].name, "blk.0.ffn_out") == 0)
			silu = g->nodes[i].op == IR_OP_SILU_GLU;
	assert_true(silu);
	drop(g);
}

/* v:ternary_stats() agrees with counting ir_ternary_row's output in C. */
/* g:fuse(n) and g:unfuse(n): one fusion put in and taken out again; the graph verifies
 * after each (the pipeline checks it when the Lua pass returns) and computes the same. */
static void test_fuse_unfuse(void **state)
{
	(void)state;
	IrGraph *g = graph();
	ok(g, "la_fuse.lua",
	   "local name\n"
	   "for n in g:nodes() do if not name and n.op == 'quant_act' then name = n.name end end\n"
	   "g:fuse(g:node(name))\n"
	   "assert(g:node(name).op == 'rmsnorm_quant')\n"
	   "assert(g:verify())\n"
	   "local ok, err = pcall(g.fuse, g, g:node(name))\n"
	   "assert(not ok and err:find('does not read an add'), err)\n"
	   "g:unfuse(g:node(name))\n"
	   "assert(g:node(name).op == 'quant_act')\n"
	   "assert(g:node(name .. '.norm').op == 'rmsnorm')\n"
	   "local ok2, msg = g:verify()\n"
	   "assert(ok2, msg)\n"
	   "ok, err = pcall(g.unfuse, g, g:node(name))\n"
	   "assert(not ok and err:find('not an rmsnorm_quant'), err)\n"
	   /* the residual add before a fused norm: the rmsnorm_quant goes, the add stays */
	   "g:fuse(g:node('blk.0.ffn_norm.q8'))\n"
	   "local rq = g:node('blk.0.ffn_norm.q8')\n"
	   "local n = g.n_nodes\n"
	   "g:fuse(rq)\n"
	   "assert(g.n_nodes == n - 1)\n"
	   "assert(not g:node('blk.0.ffn_norm.q8'))\n"
	   "ok, err = pcall(function() return rq.op end)\n"
	   "assert(not ok, 'a removed node leaves its handles stale')\n"
	   "local f = g:node('blk.0.ffn_inp')\n"
	   "assert(f.op == 'add_rmsnorm_quant' and #f.inputs == 3 and #f.outputs == 3)\n"
	   "assert(f:attr('mode') == 'token')\n"
	   "ok2, msg = g:verify()\n"
	   "assert(ok2, msg)\n"
	   "g:unfuse(f)\n"
	   "assert(g:node('blk.0.ffn_inp').op == 'add')\n"
	   "assert(g:node('blk.0.ffn_inp.norm').op == 'rmsnorm_quant')\n");
	BnErr e = {0};
	assert_int_equal(ir_verify(g, &e), BN_OK);
	/* the same logits as the untouched graph, in one 4-token call */
	IrGraph *h = graph();
	const int32_t toks[] = {496, 84, 104, 101};
	IrInterp *a = ir_interp_new(g, 8, &e), *b = ir_interp_new(h, 8, &e);
	assert_non_null(a);
	assert_non_null(b);
	int nv = (int)g->hp.n_vocab;
	float *la = malloc(4 * (size_t)nv * sizeof *la), *lb = malloc(4 * (size_t)nv * sizeof *lb);
	assert_int_equal(ir_interp_eval(a, toks, 4, la, &e), BN_OK);
	assert_int_equal(ir_interp_eval(b, toks, 4, lb, &e), BN_OK);
	assert_memory_equal(la, lb, 4 * (size_t)nv * sizeof *la);
	free(la);
	free(lb);
	ir_interp_free(a);
	ir_interp_free(b);
	drop(g);
	drop(h);
}

static void test_ternary_stats(void **state)
{
	(void)state;
	IrGraph *g = graph();
	ok(g, "la_stats.lua",
	   "local s = g:value('blk.0.ffn_down.weight'):ternary_stats()\n"
	   "assert(s.neg + s.zero + s.pos == s.total and s.total == 768 * 256)\n"
	   "assert(math.abs(s.sparsity - s.zero / s.total) < 1e-12)\n"
	   "g:set_attr('neg', s.neg); g:set_attr('zero', s.zero); g:set_attr('pos', s.pos)\n"
	   "local ok, err = pcall(function() return g:value('output_norm.weight'):ternary_stats() end)\n"
	   "assert(not ok and err:find('not a ternary weight'), err)\n");
	const IrValue *v = NULL;
	for (int i = 0; i < g->n_values; i++)
		if (strcmp(g->values[i].name, "blk.0.ffn_down.weight") == 0)
			v = &g->values[i];
	assert_non_null(v);
	int64_t k = v->ne[0], rows = v->ne[1], cnt[3] = {0, 0, 0};
	int8_t *w = malloc((size_t)k);
	float sc[8];
	for (int64_t r = 0; r < rows; r++) {
		ir_ternary_row(v->dtype, v->data, k, rows, r, w, sc);
		for (int64_t i = 0; i < k; i++)
			cnt[w[i] + 1]++;
	}
	free(w);
	assert_int_equal(gint(g, "neg"), cnt[0]);
	assert_int_equal(gint(g, "zero"), cnt[1]);
	assert_int_equal(gint(g, "pos"), cnt[2]);
	drop(g);
}

/* Handles live only inside their pass; node handles die when g:dce() renumbers. */
static void test_handles(void **state)
{
	(void)state;
	IrGraph *g = graph();
	BnErr e;
	ok(g, "la_dce.lua",
	   "local n = g:node(5)\n"
	   "local removed = g:dce()\n"
	   "assert(removed >= 0)\n"
	   "local ok, err = pcall(function() return n.name end)\n"
	   "assert(not ok and err:find('look it up again'), err)\n"
	   "assert(g:node(5).name)\n");

	const char *text = "local bitnetc = require('bitnetc')\n"
			   "local p = bitnetc.pipeline()\n"
			   "p:add(function(g) saved = g end)\n"
			   "p:add(function(g) return saved.n_nodes end)\n"
			   "return p\n";
	const char *path = tu_tmp_text("la_escape.lua", text);
	assert_int_equal(pass_pipeline_run(g, path, NULL, &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "la_escape.lua:4"));
	assert_non_null(strstr(e.msg, "graph used after the Lua pass it was given to returned"));
	drop(g);
}

/* bitnetc.target: the host by default, or what the caller describes. */
static void test_target(void **state)
{
	(void)state;
	IrGraph *g = graph();
	ok(g, "la_host.lua",
	   "local t = bitnetc.target\n"
	   "assert(t.name == 'host' and type(t.arch) == 'string' and t.ncpu >= 1)\n"
	   "assert(type(t.features) == 'table' and t.features.none == nil)\n"
	   "assert(t.cache.l1d >= 0 and t.cache.l2 >= 0 and t.cache.l3 >= 0)\n");
	PassTarget tg = {.name = "cpu-test", .arch = "x86_64", .features = "avx2 fma amx_int8",
			 .l1d = 49152, .l2 = 2097152, .ncpu = 3};
	BnErr e;
	if (snippet(g, "la_target.lua",
		    "local t = bitnetc.target\n"
		    "assert(t.name == 'cpu-test' and t.ncpu == 3)\n"
		    "assert(t.features.avx2 and t.features.amx_int8 and not t.features.avx512_vnni)\n"
		    "assert(t.cache.l1d == 49152 and t.cache.l2 == 2097152 and t.cache.l3 == 0)\n"
		    "local names = {}\n"
		    "for _, p in ipairs(bitnetc.passes()) do names[p.name] = p end\n"
		    "assert(names.dce and names.verify and names.batch_templates)\n"
		    "assert(names.batch_templates.options[1].name == 'sizes')\n"
		    "assert(names.batch_templates.options[1].type == 'int list')\n"
		    "assert(names.dce.contract:find('requires'))\n"
		    "assert(bitnetc.version)\n",
		    &(PassRunOpts){.target = &tg}, &e))
		fail_msg("%s", e.msg);
	drop(g);
}

/* What a sandboxed pipeline may not reach: each is absent or an error saying so. */
static const char sandbox_closed[] =
	"local function denied(f, what)\n"
	"  local ok, err = pcall(f)\n"
	"  assert(not ok, what .. ' is reachable')\n"
	"  assert(tostring(err):find('not available to a sandboxed pipeline', 1, true), err)\n"
	"end\n"
	"denied(function() return os.execute end, 'os')\n"
	"denied(function() return os.exit end, 'os.exit')\n"
	"denied(function() return io.open end, 'io.open')\n"
	"denied(function() return io.popen end, 'io.popen')\n"
	"denied(function() return io.lines end, 'io.lines')\n"
	"denied(function() return package.loadlib end, 'package')\n"
	"denied(function() return debug.getinfo end, 'debug')\n"
	"denied(function() return dofile end, 'dofile')\n"
	"denied(function() return loadfile end, 'loadfile')\n"
	"denied(function() return string.dump end, 'string.dump')\n"
	"denied(function() return ('x').dump end, 'string.dump through a string')\n"
	"denied(function() return coroutine.wrap end, 'coroutine')\n"
	"denied(function() return require('io').open end, 'io.open through require')\n"
	"denied(function() return require('os') end, 'require os')\n"
	"assert(rawget(_G, 'os') == nil and rawget(_G, 'package') == nil)\n"
	"assert(rawget(_G, 'debug') == nil and rawget(_G, 'dofile') == nil)\n"
	/* binary chunks: refused whatever mode is asked for */
	"local f, err = load('\\27Lua\\84\\0', 'bin', 'b')\n"
	"assert(f == nil and err:find('binary'), err)\n"
	"f, err = load('\\27Lua\\84\\0')\n"
	"assert(f == nil and err:find('binary'), err)\n"
	/* finalizers run with hooks off: outside the time limit */
	"local ok, e2 = pcall(setmetatable, {}, {__gc = function() end})\n"
	"assert(not ok and e2:find('__gc'), e2)\n"
	/* our metatables are closed: __gc of a running pipeline is out of reach */
	"assert(getmetatable(g) == 'bitnetc.Graph')\n";

/* What a sandboxed pipeline has: the libraries the examples use. */
static const char sandbox_open[] =
	"assert(require('bitnetc') == bitnetc and require('string') == string)\n"
	"assert(string.format('%d', 3) == '3' and table.concat({1, 2}, ',') == '1,2')\n"
	"assert(math.floor(2.5) == 2 and utf8.char(72) == 'H')\n"
	"assert(load('return 1 + 1')() == 2)\n"
	"assert(load('return x', 'chunk', 't', {x = 5})() == 5)\n"
	"assert(io.write == io.stdout.write and io.stderr:write('') == io.stderr)\n"
	"assert(select('#', pcall(error, 'e')) == 2 and xpcall(function() return 1 end, print))\n"
	"assert(setmetatable({}, {__index = {a = 1}}).a == 1)\n"
	"assert(type(collectgarbage('count')) == 'number')\n";

/* What --lua-unsafe gives: Lua's standard libraries, os.exit turned into an error. */
static const char unsafe_open[] =
	"assert(type(io.open) == 'function' and type(io.popen) == 'function')\n"
	"assert(type(os.execute) == 'function' and type(os.getenv) == 'function')\n"
	"assert(type(package.loadlib) == 'function' and type(debug.getinfo) == 'function')\n"
	"assert(type(dofile) == 'function' and type(loadfile) == 'function')\n"
	"assert(type(coroutine.wrap) == 'function')\n"
	"local f = assert(io.open('/dev/null')); f:close()\n"
	"local bin = string.dump(function() return 7 end)\n"
	"assert(load(bin, 'bin', 'b')() == 7)\n"
	"local ok, err = pcall(os.exit, 3)\n"
	"assert(not ok and err:find('a pipeline cannot end bitnetc'), err)\n";

static void test_sandbox(void **state)
{
	(void)state;
	IrGraph *g = graph();
	BnErr e;
	ok(g, "la_closed.lua", sandbox_closed);
	ok(g, "la_open.lua", sandbox_open);
	/* the sandbox's checks fail when everything is open: they can fail */
	PassRunOpts unsafe = {.lua = {.unsafe = true}};
	assert_int_equal(snippet(g, "la_closed_unsafe.lua", sandbox_closed, &unsafe, &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "is reachable"));
	if (snippet(g, "la_unsafe.lua", unsafe_open, &unsafe, &e))
		fail_msg("%s", e.msg);
	assert_int_equal(snippet(g, "la_unsafe_closed.lua", unsafe_open, NULL, &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "la_unsafe_closed.lua:4:"));
	assert_non_null(strstr(e.msg, "not available to a sandboxed pipeline"));
	/* os.exit, uncaught, ends the build with an error, not the process */
	assert_int_equal(snippet(g, "la_exit.lua", "os.exit(3)", &unsafe, &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "la_exit.lua:4: os.exit: a pipeline cannot end bitnetc"));
	assert_int_equal(snippet(g, "la_exit_sandbox.lua", "os.exit(3)", NULL, &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "la_exit_sandbox.lua:4: os is not available"));
	/* a running pipeline cannot be changed from a Lua pass */
	const char *text = "local bitnetc = require('bitnetc')\n"
			   "local p = bitnetc.pipeline()\n"
			   "local q\n"
			   "p:add(function(g) q:add('dce') end)\n"
			   "q = p\n"
			   "return p\n";
	const char *path = tu_tmp_text("la_grow.lua", text);
	assert_int_equal(pass_pipeline_run(g, path, NULL, &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "la_grow.lua:4: p:add while the pipeline runs"));
	drop(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_attrs),
		cmocka_unit_test(test_edits),
		cmocka_unit_test(test_fuse_unfuse),
		cmocka_unit_test(test_ternary_stats),
		cmocka_unit_test(test_handles),
		cmocka_unit_test(test_target),
		cmocka_unit_test(test_sandbox),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
