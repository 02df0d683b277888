"""The Lua scripts RedisStore runs on the server: tag invalidation, tag sets, lease release."""

from __future__ import annotations

__all__ = ["INVALIDATE_TAGS", "RELEASE_LEASE", "TAG_ADD"]

# Removes every key in each tag set, then the set; atomic on one server. Cluster mode
# cannot run it (the members live in other slots) and uses a two-step fallback instead.
INVALIDATE_TAGS = """
local removed = 0
for _, tag_key in ipairs(KEYS) do
  local members = redis.call('SMEMBERS', tag_key)
  for i = 1, #members, 500 do
    removed = removed + redis.call('UNLINK', unpack(members, i, math.min(i + 499, #members)))
  end
  redis.call('UNLINK', tag_key)
end
return removed
"""

# Adds a member to a tag set and keeps the set alive as long as its longest-lived member:
# a new set takes the member's TTL, a longer TTL extends it, a member without TTL makes it
# persistent. One key per call, so it runs on a cluster too.
TAG_ADD = """
local added = redis.call('SADD', KEYS[1], ARGV[1])
if ARGV[2] == '' then
  redis.call('PERSIST', KEYS[1])
  return added
end
local ttl = tonumber(ARGV[2])
local current = redis.call('PTTL', KEYS[1])
if current == -1 then
  if added == 1 and redis.call('SCARD', KEYS[1]) == 1 then
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
elseif current < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return added
"""

# Releases a lease only if this holder still owns it, and wakes the waiters.
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
"""
