-- decode_only.lua - the smallest binary: instantiate the forward function for one token
-- only. Prompts are then fed one token at a time (slower prefill), which suits chat-style
-- use where the prompt is short and generation dominates.
--
--   bitnetc build model.gguf --pipeline examples/pipelines/decode_only.lua
local bitnetc = require("bitnetc")

local p = bitnetc.pipeline()
p:add("infer_shapes")    -- check the frontend's graph before anything relies on it
p:add("dce")             -- drop what nothing reads (e.g. output.weight)
p:add("fuse")            -- rmsnorm + activation quantization in one pass over the row
p:add("dce")
p:add("permute_weights") -- the GEMV kernels read the i2s_x16 layout
-- One template: GEMV kernels only, no tiled GEMM code for prefill.
p:add("batch_templates", {sizes = {1}})
p:add("plan_kv")
p:add("plan_memory")     -- activations for one token: the smallest scratch
return p
