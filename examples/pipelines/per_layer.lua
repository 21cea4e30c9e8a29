-- per_layer.lua - the default pipeline plus a per-layer override: the ffn_down matmuls (the
-- widest ternary matrices, k = n_ff) get their own GEMM tile, picked from the target's
-- features; one layer's ffn_down is forced onto the portable C kernel (to compare against,
-- or to work around a suspect SIMD path). Every other matmul keeps codegen's default.
--
--   bitnetc build model.gguf --pipeline examples/pipelines/per_layer.lua --target native
--
-- Attributes codegen reads on a ternary_matmul whose weight is in the i2s_x16 layout:
--   tile   = {rows, tokens}: rows a multiple of 16, computed together for `tokens` tokens,
--            with rows/16 x tokens accumulators held in registers (AVX-512: <= 24;
--            AVX2: rows/8 x tokens <= 12). More tokens reuse each unpacked weight more.
--   kernel = "simd" (the target's family, the default) or "portable".
-- A value codegen cannot take is an error naming the node; the verifier checks the graph
-- after every Lua pass, with this file's line.
local bitnetc = require("bitnetc")
local features = bitnetc.target.features

-- ffn_down reads 4*n_ff bytes of weights per 16 rows (27 KiB for n_ff 6912): one tile of
-- it no longer sits in L1 next to its activations, so reuse each loaded weight over more
-- tokens than the default tile does.
local tile
if features.avx512_vnni then
	tile = {32, 12}
elseif features.avx2 then
	tile = {16, 6}
end

local p = bitnetc.pipeline()
p:add("infer_shapes")
p:add("dce")
p:add("fuse")
p:add("dce")
p:add("permute_weights")
p:add("batch_templates", {sizes = {1, 8, 32, 128}})

p:add(function(g)
	-- Node names follow the GGUF tensor names without ".weight".
	for _, n in ipairs(g:match_nodes("blk.*.ffn_down")) do
		if n.op == "ternary_matmul" and tile then
			n:set_attr("tile", tile)
		end
	end
	local first = g:node("blk.0.ffn_down")
	if first then
		first:set_attr("kernel", "portable")
	end
end, "ffn_down_tiles")

p:add("plan_kv")
p:add("plan_memory")
return p
