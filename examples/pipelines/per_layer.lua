-- per_layer.lua - the default pipeline plus a per-layer override: the ffn_down matmuls
-- (the largest ternary matrices, k = n_ff) get their own kernel choice and tile, picked
-- from the target's features and cache size. Every other matmul keeps codegen's default.
--
--   bitnetc build model.gguf --pipeline examples/pipelines/per_layer.lua
--
-- Attributes set here are hints codegen reads ("kernel", "tile"); the verifier checks the
-- graph after every Lua pass, so a typo in an attribute the IR itself needs (e.g. a float
-- eps set to an int) is caught with this file's line.
local bitnetc = require("bitnetc")
local target = bitnetc.target

-- The kernel family for the host: branch on features, not on CPU names.
local kernel
if target.features.avx512_vnni then
	kernel = "i2s_vnni"
elseif target.features.avx2 then
	kernel = "i2s_avx2"
elseif target.features.neon then
	kernel = "i2s_neon"
else
	kernel = "i2s_generic"
end

-- Rows per tile: keep one tile of int8 activations plus its packed weights (k/4 bytes a
-- row) within half of L1 so the next tile's loads do not evict it. Unknown cache: 32 KiB.
local function tile_rows(k)
	local l1 = target.cache.l1d > 0 and target.cache.l1d or 32768
	local rows = (l1 // 2 - k) // (k // 4)
	local t = 8
	while t * 2 <= rows and t < 256 do
		t = t * 2
	end
	return t
end

local p = bitnetc.pipeline()
p:add("verify")
p:add("dce")
p:add("batch_templates", {sizes = {1, 8, 32, 128}})

p:add(function(g)
	-- Node names follow the GGUF tensor names without ".weight".
	for _, n in ipairs(g:match_nodes("blk.*.ffn_down")) do
		if n.op == "ternary_matmul" then
			local w = n.inputs[3]            -- the weight: codes, scales, weight
			local k = w.shape[1]             -- ggml order: shape[1] is the row length
			n:set_attr("kernel", kernel)
			n:set_attr("tile", {tile_rows(k), 1})
		end
	end
end, "ffn_down_kernels")

return p
