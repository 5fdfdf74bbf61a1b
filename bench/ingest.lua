-- wrk script for the ingest benchmark: every request is a distinct, pre-signed GitHub push delivery.
-- Thread N reads <dir>/bodies-N.tsv (delivery \t signature \t body, one per line) at init and cycles
-- through it; `wrapped` counts requests sent after a thread ran out of distinct deliveries (those
-- are duplicates for a deduplicating receiver). Status counts are summed over threads in done().

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local dir = args[1]
  reqs = {}
  for line in io.lines(string.format("%s/bodies-%d.tsv", dir, id)) do
    local delivery, signature, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    reqs[#reqs + 1] = wrk.format("POST", nil, {
      ["Content-Type"] = "application/json",
      ["User-Agent"] = "GitHub-Hookshot/bench",
      ["X-GitHub-Event"] = "push",
      ["X-GitHub-Delivery"] = delivery,
      ["X-Hub-Signature-256"] = signature,
    }, body)
  end
  n = #reqs
  i = 0
  sent = 0
  s200 = 0
  s202 = 0
  s2xx = 0
  s400 = 0
  s401 = 0
  s413 = 0
  s503 = 0
  other = 0
end

function request()
  i = i % n + 1
  sent = sent + 1
  return reqs[i]
end

function response(status, headers, body)
  if status == 202 then
    s202 = s202 + 1
  elseif status == 200 then
    s200 = s200 + 1
  elseif status >= 200 and status < 300 then
    s2xx = s2xx + 1
  elseif status == 400 then
    s400 = s400 + 1
  elseif status == 401 then
    s401 = s401 + 1
  elseif status == 413 then
    s413 = s413 + 1
  elseif status == 503 then
    s503 = s503 + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local t = { s200 = 0, s202 = 0, s2xx = 0, s400 = 0, s401 = 0, s413 = 0, s503 = 0, other = 0, wrapped = 0 }
  for _, thread in ipairs(threads) do
    for _, key in ipairs({ "s200", "s202", "s2xx", "s400", "s401", "s413", "s503", "other" }) do
      t[key] = t[key] + (thread:get(key) or 0)
    end
    t.wrapped = t.wrapped + math.max(0, (thread:get("sent") or 0) - (thread:get("n") or 0))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"mean_us": %.1f, "s200": %d, "s202": %d, "s2xx": %d, "s400": %d, "s401": %d, "s413": %d, "s503": %d, ' ..
    '"other": %d, "wrapped": %d, ' ..
    '"err_connect": %d, "err_read": %d, "err_write": %d, "err_status": %d, "err_timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, t.s200, t.s202, t.s2xx, t.s400, t.s401, t.s413, t.s503,
    t.other, t.wrapped,
    e.connect, e.read, e.write, e.status, e.timeout))
end
