-- The framework answering a POST with an issue request's body and a constant (405 problem from
-- POST /healthz): the request side of an issuance without any of its work.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"user_id":"constant-user-1"}'
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")
