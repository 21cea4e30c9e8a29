-- t5_weights.lua - the default pipeline with the ternary weights packed 5 trits per byte
-- (permute_weights layout t5_x16, 1.6 bits per weight; ir/ir.h documents the bytes) instead
-- of i2s_x16's 2 bits: a decode step reads 20% fewer ternary weight bytes, the logits are
-- the same bit for bit, and the prefill GEMM unpacks more per byte, so it is slower (README
-- "Speed" has both, measured). x86 (AVX-512, AVX2) and portable C only: the NEON targets
-- refuse the layout; no LUT or AMX kernel reads it.
--
--   bitnetc build model.gguf --pipeline examples/pipelines/t5_weights.lua
-- (the same as --pass-opt permute_weights.layout=t5_x16 with the default pipeline)
local bitnetc = require("bitnetc")

local p = bitnetc.pipeline()
p:add("infer_shapes")
p:add("dce")
p:add("fuse")
p:add("dce")
p:add("permute_weights", {layout = "t5_x16"})
p:add("batch_templates", {sizes = {1, 8, 32, 128}})
p:add("lut_specialize") -- leaves t5_x16 matmuls on multiply-add
p:add("tune_kernels")
p:add("plan_kv")
p:add("plan_memory")
return p
