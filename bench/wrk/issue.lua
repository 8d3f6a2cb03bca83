-- Every request a new user: "<run>-<thread>-<counter>". Prints one RESULT line for bench/run.py.
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

function done(summary, latency, requests)
    local errors = summary.errors
    io.write(string.format(
        "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d socket_errors=%d\n",
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        errors.status, errors.connect + errors.read + errors.write + errors.timeout))
end
