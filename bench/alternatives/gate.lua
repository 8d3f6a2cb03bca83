-- The first-come-first-served gate as the popular Redis coupon designs write it: one script per
-- request, atomic because Redis runs a script alone. KEYS[1]: the set of users holding a ticket,
-- KEYS[2]: the tickets left; ARGV[1]: the user. Answers 'already', 'sold_out' or 'issued'.
-- The counter is read before it is decremented, so it never goes below zero.
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
    return 'already'
end
if tonumber(redis.call('GET', KEYS[2]) or '0') <= 0 then
    return 'sold_out'
end
redis.call('DECR', KEYS[2])
redis.call('SADD', KEYS[1], ARGV[1])
return 'issued'
