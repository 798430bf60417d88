-- Cache-or-enqueue in one script, for `make bench`: what the seeds do in three round
-- trips (GET cache; on a miss SET job JSON EX + LPUSH queue), made atomic.
-- KEYS[1] = cache key, KEYS[2] = job key, KEYS[3] = queue list
-- ARGV[1] = job JSON, ARGV[2] = job id
-- Reply: {"hit", false, value} or {"queued", id, false}
local v = redis.call('GET', KEYS[1])
if v then return { 'hit', false, v } end
redis.call('SET', KEYS[2], ARGV[1], 'EX', 3600)
redis.call('LPUSH', KEYS[3], ARGV[2])
return { 'queued', ARGV[2], false }
