-- decode_only.lua - the smallest binary: instantiate the forward function for one token
-- only. Prompts are then fed one token at a time (slower prefill), which suits chat-style
-- use where the prompt is short and generation dominates.
--
--   bitnetc build model.gguf --pipeline examples/pipelines/decode_only.lua
local bitnetc = require("bitnetc")

local p = bitnetc.pipeline()
p:add("verify")          -- check the frontend's graph before anything relies on it
p:add("dce")             -- drop what nothing reads (e.g. output.weight)
-- One template: GEMV kernels only, no tiled GEMM code for prefill.
p:add("batch_templates", {sizes = {1}})
return p
