-- The seeds' job creation (SET job JSON EX + LPUSH queue) in one script, for `make bench`.
-- KEYS[1] = job key, KEYS[2] = queue list; ARGV[1] = job JSON, ARGV[2] = job id
redis.call('SET', KEYS[1], ARGV[1], 'EX', 3600)
redis.call('LPUSH', KEYS[2], ARGV[2])
return ARGV[2]
