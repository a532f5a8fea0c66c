-- wrk script for GET /sessions/whoami, round-robin over session tokens, one per line in the
-- file named by the TOKENS environment variable (written by `go run ./bench/load -scenario whoami
-- -setup-only -tokens-out FILE`). Every wrk thread starts at a different offset.
--
--   TOKENS=/tmp/tokens.txt wrk -t2 -c64 -d10s -s bench/wrk/whoami.lua http://127.0.0.1:4433
--
-- There is deliberately no response() callback: defining one makes wrk hand every body to Lua,
-- which costs the client CPU this script exists to save. Any answer that is not 2xx/3xx (a 401
-- for an unknown token) shows up in wrk's own "Non-2xx or 3xx responses" line.

local path = os.getenv("TOKENS") or "tokens.txt"
local tokens = {}
for line in io.lines(path) do
  if #line > 0 then tokens[#tokens + 1] = line end
end
if #tokens == 0 then error("no tokens in " .. path) end

local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("offset", counter * 7919)
end

local i = 0
local headers = { ["Accept"] = "application/json" }

function init(args)
  i = offset or 0
end

function request()
  i = i + 1
  headers["X-Session-Token"] = tokens[(i % #tokens) + 1]
  return wrk.format("GET", "/sessions/whoami", headers)
end

function done(summary, latency, requests)
  for _, p in ipairs({ 50, 90, 99, 99.9 }) do
    io.write(string.format("p%g: %.2f ms\n", p, latency:percentile(p) / 1000))
  end
end
