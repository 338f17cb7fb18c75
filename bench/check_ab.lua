-- wrk script for the A/B scenario: check.lua, plus a request() that puts a user id in each body.
local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "check.lua")

function request()
  sent = sent + 1
  local body = string.gsub(template, "{{user}}", "u" .. (sent % 5000))
  return wrk.format(nil, nil, nil, body)
end
