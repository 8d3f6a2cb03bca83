-- The framework's own ceiling: a route that answers a constant (GET /healthz).
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")
