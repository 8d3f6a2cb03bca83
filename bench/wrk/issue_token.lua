-- Issue requests with bearer JWTs (JWT identity): no body, the token names the user. The tokens come
-- from a file, one per line; each request takes the next, round and round, so a file shorter than
-- the run makes retries with tokens verified before. Reports through report.lua.
-- Usage: wrk -t1 -s issue_token.lua http://127.0.0.1:8080 -- COUPON_ID TOKENS_FILE
local tokens = {}
local next_token = 0

function init(args)
    wrk.method = "POST"
    wrk.path = "/v1/coupons/" .. args[1] .. "/issue"
    for line in io.lines(args[2]) do
        tokens[#tokens + 1] = line
    end
end

function request()
    next_token = next_token % #tokens + 1
    wrk.headers["Authorization"] = "Bearer " .. tokens[next_token]
    return wrk.format()
end

dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")
