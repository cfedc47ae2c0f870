-- wrk script for `cargo xtask bench-edge`. Every request carries the next bearer token of
-- a file (one token per line, wrapping at the end): a file of one token repeats it, a
-- file of distinct tokens shows each request a token no cache has seen.
--   wrk ... -s tokens.lua <url> -- <token file> <index of the first token, from 1>
-- done() prints one line that bench_edge.rs parses (latencies in microseconds).

local headers, count, index

function init(args)
  headers, count = {}, 0
  for line in io.lines(args[1]) do
    count = count + 1
    headers[count] = "Bearer " .. line
  end
  if count == 0 then
    error("no tokens in " .. args[1])
  end
  index = ((tonumber(args[2]) or 1) - 1) % count + 1
end

function request()
  local authorization = headers[index]
  index = index % count + 1
  return wrk.format("GET", "/bench", { ["Authorization"] = authorization })
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d status_errors=%d socket_errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
