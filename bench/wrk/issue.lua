-- Every request a new user: "<run>-<thread>-<counter>". Reports through report.lua.
-- Usage: wrk -s issue.lua http://127.0.0.1:8080 -- COUPON_ID RUN_TAG
local threads = {}
local counter = 0
thread_id = 0  -- set per thread by setup()
local coupon, tag

function setup(thread)
    thread:set("thread_id", #threads + 1)
    table.insert(threads, thread)
end

function init(args)
    coupon = args[1]
    tag = args[2] or "r"
    wrk.method = "POST"
    wrk.path = "/v1/coupons/" .. coupon .. "/issue"
    wrk.headers["Content-Type"] = "application/json"
end

function request()
    counter = counter + 1
    wrk.body = '{"user_id":"' .. tag .. "-" .. thread_id .. "-" .. counter .. '"}'
    return wrk.format()
end

dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")
