-- quantized_head.lua - the default pipeline plus quantize_head: the tied output head (the
-- largest tensor a decode step reads: 657 MB in f16 for a 2B model) becomes Q6_K (269 MB;
-- what ik_llama.cpp gives it by default) or, with --pass-opt quantize_head.type=q8_0,
-- Q8_0 (349 MB; bitnet.cpp's --quant-embd). Decode reads fewer bytes per token; the logits
-- change a little (build/tests/test_quantize_head reports by how much).
--
--   bitnetc build model.gguf --pipeline examples/pipelines/quantized_head.lua
local bitnetc = require("bitnetc")

local p = bitnetc.pipeline()
p:add("infer_shapes")
p:add("dce")
p:add("fuse")
p:add("dce")
p:add("permute_weights")
p:add("batch_templates", {sizes = {1, 8, 32, 128}})
p:add("lut_specialize")
p:add("tune_kernels")
-- The head's weight is a constant: quantized once here, before the memory plan.
p:add("quantize_head", {type = "q6_k"})
p:add("plan_kv")
p:add("plan_memory")
return p
