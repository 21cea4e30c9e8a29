-- sparsity_report.lua - a pass written in Lua that changes nothing and prints, for every
-- ternary weight, how many of its entries are -1, 0 and +1. Zeros are free in a LUT kernel
-- and skipped work in a sparse one, so this tells you which kernel family pays off.
--
--   bitnetc build model.gguf --pipeline examples/pipelines/sparsity_report.lua
--
-- The report goes to stderr (stdout may carry the build's own output). It also records
-- the whole model's zero fraction as the graph attribute "ternary_sparsity_ppm" (parts per
-- million), which later passes or codegen may read.
local bitnetc = require("bitnetc")

local p = bitnetc.pipeline()
p:add("verify")
p:add("dce")

p:add(function(g)
	local out = io.stderr
	local zero, total = 0, 0
	out:write(string.format("%-32s %-6s %12s %8s %8s %8s\n", "tensor", "type", "weights",
		"-1", "0", "+1"))
	for v in g:values() do
		if v.kind == "const" and v.ternary then
			local s = v:ternary_stats()
			out:write(string.format("%-32s %-6s %12d %7.2f%% %7.2f%% %7.2f%%\n", v.name,
				v.dtype, s.total, 100 * s.neg / s.total, 100 * s.sparsity,
				100 * s.pos / s.total))
			zero, total = zero + s.zero, total + s.total
		end
	end
	if total > 0 then
		out:write(string.format("%-32s %-6s %12d %8s %7.2f%%\n", "all ternary weights", "",
			total, "", 100 * zero / total))
		g:set_attr("ternary_sparsity_ppm", zero * 1000000 // total)
	end
end, "sparsity_report")

p:add("batch_templates", {sizes = {1, 8, 32, 128}})
return p
