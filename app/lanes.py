"""Per-customer lanes: the sends to one customer leave in the order their messages arrived.

A lane is a Redis list per recipient (shop account, customer) of what that customer is owed, in order:

  m|<msg>|<t>   a message of theirs, not yet matched (pushed by the listener on receipt)
  t|<task>|<t>  a fired task whose action waits for its turn
  s|<task>|<t>  the task whose action is under way (the head)

Matching replaces a message's entry by the tasks it fired (none: the entry goes), so tasks line up in the
order their messages arrived whichever worker matched which message. Only the head runs; whoever
finishes it pops it and starts the next. A lane is an ordering aid, never a source of truth: the task's
lease in SQL still re-drives an action whose lane was lost (Redis restarted) or whose starter died, and
an entry stuck at the head (a message whose match was lost, a head whose finisher died) is dropped after
a bound, so a customer's actions can be delayed by a failure but never stopped.
"""
from __future__ import annotations

import time

import redis

from app.infra.keys import Keys
from app.infra.redis_client import eval_many

# How long an entry may hold a lane's head: an unmatched message (its match is re-driven from SQL within
# MATCH_REDRIVE seconds), a started action (steps take at most QINGJIAN_SEND_TIMEOUT each).
MESSAGE_HOLD_SECONDS = 30.0
ACTION_HOLD_SECONDS = 60.0
LANE_TTL_SECONDS = 3600

# Start the head if it waits; drop heads held past their bound. Returns the task id started, or false.
_ADVANCE = """
local function advance(lane, now, message_hold, action_hold)
  while true do
    local head = redis.call('lindex', lane, 0)
    if not head then return false end
    local kind, id, since = string.match(head, '^(%a)|(.*)|([%d.]+)$')
    since = tonumber(since)
    if kind == 't' then
      redis.call('lset', lane, 0, 's|' .. id .. '|' .. now)
      return id
    end
    local hold = (kind == 'm') and message_hold or action_hold
    if now - since <= hold then return false end
    redis.call('lpop', lane)
  end
end
"""

# KEYS[1] lane. ARGV: now, message hold, action hold, ttl, message key, task ids... (in firing order).
# The message's entry becomes its tasks (or, if the entry is gone, they join at the tail).
_RESOLVE = _ADVANCE + """
local lane, now = KEYS[1], tonumber(ARGV[1])
local marker = 'm|' .. ARGV[5] .. '|'
local entries = redis.call('lrange', lane, 0, -1)
local found = nil
for i, entry in ipairs(entries) do
  if string.sub(entry, 1, #marker) == marker then found = entry break end
end
for i = 6, #ARGV do
  local entry = 't|' .. ARGV[i] .. '|' .. ARGV[1]
  if found then redis.call('linsert', lane, 'BEFORE', found, entry) else redis.call('rpush', lane, entry) end
end
if found then redis.call('lrem', lane, 1, found) end
redis.call('expire', lane, ARGV[4])
return advance(lane, now, tonumber(ARGV[2]), tonumber(ARGV[3]))
"""

# KEYS[1] lane. ARGV: now, message hold, action hold, ttl, task id. The task queues at the tail (unless it
# is in the lane already); returns the task started, if the head changed hands. A task that holds the head
# already is started again: it is re-driven because whoever started it is gone (its lease lapsed).
_JOIN = _ADVANCE + """
local lane, now = KEYS[1], tonumber(ARGV[1])
local present = false
for i, entry in ipairs(redis.call('lrange', lane, 0, -1)) do
  if string.match(entry, '^%a|(.*)|[%d.]+$') == ARGV[5] then
    if i == 1 then
      redis.call('lset', lane, 0, 's|' .. ARGV[5] .. '|' .. ARGV[1])
      redis.call('expire', lane, ARGV[4])
      return ARGV[5]
    end
    present = true break
  end
end
if not present then redis.call('rpush', lane, 't|' .. ARGV[5] .. '|' .. ARGV[1]) end
redis.call('expire', lane, ARGV[4])
return advance(lane, now, tonumber(ARGV[2]), tonumber(ARGV[3]))
"""

# KEYS[1] lane. ARGV: now, message hold, action hold, ttl, task id. The task's action is over: it leaves
# the lane; returns the next task started, if any.
_DONE = _ADVANCE + """
local lane, now = KEYS[1], tonumber(ARGV[1])
for _, entry in ipairs(redis.call('lrange', lane, 0, -1)) do
  if string.match(entry, '^%a|(.*)|[%d.]+$') == ARGV[5] then redis.call('lrem', lane, 1, entry) break end
end
return advance(lane, now, tonumber(ARGV[2]), tonumber(ARGV[3]))
"""


class Lanes:
    def __init__(self, client: redis.Redis, keys: Keys):
        self.r = client
        self.keys = keys
        self._resolve = client.register_script(_RESOLVE)
        self._join = client.register_script(_JOIN)
        self._done = client.register_script(_DONE)

    @staticmethod
    def message_entry(message_key: str, at: float) -> str:
        """What the listener pushes for a message on receipt (see app.registry.Registry.remember_many)."""
        return f"m|{message_key}|{at:.6f}"

    def resolve(self, batch: list[tuple[tuple[str | None, str], str, list[str]]]) -> list[str]:
        """For each (lane, message key, task ids fired by it): the message's place goes to its tasks.
        Returns the tasks that are now at their lane's head and must be started, in one round trip."""
        bounds = self._bounds()
        return _started(eval_many(self.r, [(self._resolve, [self.keys.lane(acc_id, customer_id)],
                                            [*bounds, message_key, *task_ids])
                                           for (acc_id, customer_id), message_key, task_ids in batch]))

    def join(self, entries: list[tuple[tuple[str | None, str], str]]) -> list[str]:
        """(lane, task id): actions fired without a message of the customer's (a timer, a custom event, a
        catch-up, a retry) queue at the tail. Returns the tasks to start now."""
        return self._each(self._join, entries)

    def done(self, entries: list[tuple[tuple[str | None, str], str]]) -> list[str]:
        """(lane, task id): those actions are over (finished, failed, or waiting for a retry). Returns the
        tasks that took their places at the head and must be started."""
        return self._each(self._done, entries)

    def _each(self, script, entries) -> list[str]:
        bounds = self._bounds()
        return _started(eval_many(self.r, [(script, [self.keys.lane(acc_id, customer_id)], [*bounds, task_id])
                                           for (acc_id, customer_id), task_id in entries]))

    @staticmethod
    def _bounds() -> list:
        return [f"{time.time():.6f}", MESSAGE_HOLD_SECONDS, ACTION_HOLD_SECONDS, LANE_TTL_SECONDS]


def _started(replies) -> list[str]:
    return [r.decode() if isinstance(r, bytes) else r for r in replies if r]
