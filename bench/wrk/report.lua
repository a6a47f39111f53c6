-- report.lua: prints one machine-readable line when wrk finishes, read by
-- bench/run. Latencies are in microseconds; non2xx counts 4xx and 5xx answers.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d errors=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
