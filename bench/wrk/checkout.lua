-- Checkout calls, each request the next ticket of a file of "<code> <user>" lines (round and round).
-- Usage: wrk -s checkout.lua URL -- MODE FILE COUPON_ID RUN_TAG
--   by_code   GET /v1/tickets/<code>
--   by_holder GET /v1/coupons/<coupon>/tickets/<user>
--   hold      POST /v1/tickets/<code>/redemption {"order_id":"<tag>-<n>","hold_seconds":600}
--   confirm   POST /v1/tickets/<code>/redemption {"order_id":"<tag>-<n>"} (confirms hold's order n)
-- Reports through report.lua.
local tickets = {}
local counter = 0
local mode, coupon, tag

function init(args)
    mode, coupon, tag = args[1], args[3], args[4] or "r"
    for line in io.lines(args[2]) do
        local code, user = line:match("^(%S+) (%S+)$")
        table.insert(tickets, { code = code, user = user })
    end
    if mode == "hold" or mode == "confirm" then
        wrk.method = "POST"
        wrk.headers["Content-Type"] = "application/json"
    end
end

function request()
    counter = counter + 1
    local ticket = tickets[(counter - 1) % #tickets + 1]
    if mode == "by_code" then
        return wrk.format(nil, "/v1/tickets/" .. ticket.code)
    elseif mode == "by_holder" then
        return wrk.format(nil, "/v1/coupons/" .. coupon .. "/tickets/" .. ticket.user)
    elseif mode == "hold" then
        return wrk.format(nil, "/v1/tickets/" .. ticket.code .. "/redemption",
            nil, '{"order_id":"' .. tag .. "-" .. counter .. '","hold_seconds":600}')
    else
        return wrk.format(nil, "/v1/tickets/" .. ticket.code .. "/redemption", nil, '{"order_id":"' .. tag .. "-" .. counter .. '"}')
    end
end

dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")
