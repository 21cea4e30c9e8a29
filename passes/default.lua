-- default.lua - the pipeline bitnetc runs when no --pipeline is given. It is embedded in
-- bitnetc and installed beside it: copy it to start your own (see examples/pipelines/).
--
-- A pipeline script builds a list of steps and returns it; bitnetc then runs the steps in
-- order on the model's graph. p:add("name", {option = value}) adds a pass from the registry
-- (`bitnetc passes` lists them with their options); p:add(function(g) ... end) adds a pass
-- written in Lua. --pass-opt pass.key=value on the command line overrides the options here.
local bitnetc = require("bitnetc")

local p = bitnetc.pipeline()

-- Check what the frontend built before anything relies on it: every node's output types from
-- its inputs and attributes by the verifier's per-op rules, filling in any a pass left unset
-- (so a pass that adds a node need not compute them). Run it again after such a pass.
p:add("infer_shapes")

-- Drop weights and nodes nothing reads (the BitNet head ignores output.weight).
p:add("dce")

-- Fuse each rmsnorm that only feeds a quantizer into one rmsnorm_quant node (the normed rows
-- stay in a per-call temporary), and each residual add before one into add_rmsnorm_quant
-- (the sum is normed while it is in cache), then drop the norms the fusion left unread.
p:add("fuse")
p:add("dce")

-- Repack the ternary weights once into the layout the CPU kernels read (i2s_x16: 16 rows
-- interleaved so one 64-byte load feeds vpdpbusd for 16 rows); a weight that does not fit
-- it keeps its GGUF layout and the portable kernel. layout = "gguf" turns it off;
-- layout = "t5_x16" packs 5 trits per byte (20% fewer weight bytes per decoded token, same
-- logits; slower prefill GEMM, no LUT/AMX/NEON kernels: README "Speed" has the trade).
p:add("permute_weights")

-- Token counts to build forward functions for: 1 for decoding (GEMV), the larger ones for
-- prefill (tiled GEMM). The program splits a prompt over them largest first.
p:add("batch_templates", {sizes = {1, 8, 32, 128}})

-- Table lookup (LUT) or multiply-add kernels, per matmul and batch size: measured on this
-- machine with `bitnetc build --tune`, else read from the tuning file, else a cost model
-- (multiply-add where the target has int8 dot products, LUT for portable C on i2s_x16).
p:add("lut_specialize")

-- Each ternary matmul's GEMM tile (with AMX: its block of AMX tiles): measured on this
-- machine with `bitnetc build --tune` (recorded in ~/.cache/bitnetc/tune.tsv), else read
-- from that file, else codegen's default.
p:add("tune_kernels")

-- Place each attention layer's K and V in the KV cache (per layer K then V, each
-- [sequences][positions][n_head_kv * head_dim] f16), recorded on the attention nodes.
p:add("plan_kv")

-- Give every activation a fixed offset in one scratch arena sized for the largest batch size,
-- reusing the space of values nothing reads any more. Last: a pass that adds values after it
-- would leave them without a place (the verifier says so).
p:add("plan_memory")

return p
