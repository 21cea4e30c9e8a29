-- default.lua - the pipeline bitnetc runs when no --pipeline is given. It is embedded in
-- bitnetc and installed beside it: copy it to start your own (see examples/pipelines/).
--
-- A pipeline script builds a list of steps and returns it; bitnetc then runs the steps in
-- order on the model's graph. p:add("name", {option = value}) adds a pass from the registry
-- (`bitnetc passes` lists them with their options); p:add(function(g) ... end) adds a pass
-- written in Lua. --pass-opt pass.key=value on the command line overrides the options here.
local bitnetc = require("bitnetc")

local p = bitnetc.pipeline()

-- Check what the frontend built before anything relies on it.
p:add("verify")

-- Drop weights and nodes nothing reads (the BitNet head ignores output.weight).
p:add("dce")

-- Fuse each rmsnorm that only feeds a quantizer into one rmsnorm_quant node (the normed rows
-- stay in a per-call temporary), then drop the norms the fusion left unread.
p:add("fuse")
p:add("dce")

-- Token counts to build forward functions for: 1 for decoding, the larger ones for prefill.
-- Today the CPU backend builds the one-token forward and a batch forward for up to the
-- largest size (its --max-batch), and the program feeds prompts in calls of up to that size.
p:add("batch_templates", {sizes = {1, 8, 32, 128}})

return p
