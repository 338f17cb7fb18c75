-- wrk script: POST one body and check every answer.
-- Arguments (after `--`): body file, content type, mode ("exact", "contains" or "ab"), expected answer files...
-- An answer is right when its status is 200 and its body equals ("exact") or contains ("contains")
-- one of the expected answers; "ab" is "contains" with any 2xx status (the A/B API answers 200, 201
-- or 202) and a body template: each request's "{{user}}" becomes a user id from a pool of 5,000
-- (first visits, then returning users); that needs a request() function, which makes wrk build every
-- request in Lua, so it is defined only in check_ab.lua (which loads this file), not for the others.
-- done() prints one BENCH line that bench/load.py parses.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

function init(args)
  wrk.method = "POST"
  wrk.body = slurp(args[1])
  wrk.headers["Content-Type"] = args[2]
  mode = args[3]
  expected = {}
  for i = 4, #args do
    expected[#expected + 1] = slurp(args[i])
  end
  non200, wrong, sample = 0, 0, ""
  template, sent = nil, 0
  if mode == "ab" then
    template = wrk.body
  end
  matched = {}
  for i = 1, #expected do
    matched[i] = 0
  end
end

local function is_expected(body, want)
  if mode == "exact" then
    return body == want
  end
  -- "contains" and "ab"
  return string.find(body, want, 1, true) ~= nil
end

function response(status, headers, body)
  if status ~= 200 and not (mode == "ab" and status >= 200 and status < 300) then
    non200 = non200 + 1
    if sample == "" then
      sample = status .. " " .. string.sub(body or "", 1, 300)
    end
    return
  end
  for i = 1, #expected do
    if is_expected(body, expected[i]) then
      matched[i] = matched[i] + 1
      return
    end
  end
  wrong = wrong + 1
  if sample == "" then
    sample = string.sub(body or "", 1, 300)
  end
end

function done(summary, latency, requests)
  local n200, nwrong, first = 0, 0, ""
  local nmatched = {}
  for _, t in ipairs(threads) do
    n200 = n200 + t:get("non200")
    nwrong = nwrong + t:get("wrong")
    if first == "" then
      first = t:get("sample")
    end
    local m = t:get("matched")
    for i = 1, #m do
      nmatched[i] = (nmatched[i] or 0) + m[i]
    end
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d non200=%d wrong=%d connect=%d read=%d write=%d timeout=%d "
      .. "p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f matched=%s\n",
    summary.requests, summary.duration, n200, nwrong, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    table.concat(nmatched, ",")))
  io.write("BENCH-SAMPLE " .. string.format("%q", first) .. "\n")
end
