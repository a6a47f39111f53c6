-- fresh.lua: a different bearer token on every request, taken in turn from
-- the file named by BENCH_TOKENS (one token a line, each unique), so every
-- request costs a full signature verification. Loaded in init, which only
-- the threads that send requests run.
local tokens, n, i = {}, 0, 0
local headers = {}

init = function(args)
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    n = n + 1
    tokens[n] = line
  end
  assert(n > 0, "no tokens in " .. os.getenv("BENCH_TOKENS"))
end

request = function()
  i = i % n + 1
  headers["Authorization"] = "Bearer " .. tokens[i]
  return wrk.format(nil, nil, headers)
end

dofile(os.getenv("BENCH_WRK_DIR") .. "/report.lua")
