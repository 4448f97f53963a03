//! The Lua scripts behind appends, ack, seek and consumer state.
//!
//! Each runs atomically on the server, so what one call does is never seen
//! half done, and the common cases cost one round trip.
//!
//! A consumer's position is the group's acknowledgement floor: the entry
//! before its oldest pending entry, or its last delivered id when nothing
//! is pending.
//!
//! A script blocks the whole server while it runs, and one that runs past
//! `lua-time-limit` (5 s by default) makes every other client's command
//! fail with `BUSY`. So no ack walks more than [`STEP`] pending entries in
//! Lua per call (about 25 ms of server time, measured on Redis 7.0.15); an
//! ack over more takes several calls, each moving the position forward,
//! never past its target, and the driver calls again until the script says
//! it is done. A seek drops the pending entries in C, in one call.

use redis::Script;
use std::sync::LazyLock;

/// The most pending entries one call of [`ACK`] acknowledges; a Lua
/// variable of the same name in every script with [`HELPERS`].
pub(crate) const STEP: usize = 10_000;

/// A script: [`STEP`], [`HELPERS`], then `body`.
fn with_helpers(body: &str) -> Script {
    Script::new(&format!("local STEP = {STEP}\n{HELPERS}\n{body}"))
}

const HELPERS: &str = r#"
local function seq(id) return tonumber(string.match(id, '^0%-(%d+)$')) or 0 end
local function last_seq(key)
  if redis.call('EXISTS', key) == 0 then return 0 end
  local info = redis.call('XINFO', 'STREAM', key)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then return seq(info[i + 1]) end
  end
  return 0
end
-- The group's pending summary {count, oldest, newest, members}, or nil when
-- there is no group (or no stream). O(1), where `delivered` reads every
-- group of the stream.
local function pending_summary(key, group)
  local ok, summary = pcall(redis.call, 'XPENDING', key, group)
  if ok then return summary end
  return nil
end
-- The group's last delivered sequence number, or nil when there is no group.
-- XINFO GROUPS lists every group of the stream: the cost grows with the
-- number of consumers, so it is asked only when nothing else tells.
local function delivered(key, group)
  if redis.call('EXISTS', key) == 0 then return nil end
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
    local name, last
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
    end
    if name == group then return seq(last) end
  end
  return nil
end
-- Acknowledges the group's pending entries from `from` to `upto`, oldest
-- first, at most STEP of them; true when none is left in that range.
local function ack_range(key, group, from, upto)
  local left = STEP
  while left > 0 do
    local want = math.min(left, 1000)
    local pending = redis.call('XPENDING', key, group, from, upto, want)
    if #pending == 0 then return true end
    local ids = {}
    for i, p in ipairs(pending) do ids[i] = p[1] end
    redis.call('XACK', key, group, unpack(ids))
    if #pending < want then return true end
    left = left - #pending
  end
  return #redis.call('XPENDING', key, group, from, upto, 1) == 0
end
-- Whether another holder than `holder` has the lease at `lease` (an
-- exclusive subscription's key, which expires by itself); never for an
-- empty holder, which asks for no fencing.
local function fenced(lease, holder)
  if holder == '' then return false end
  local current = redis.call('GET', lease)
  return current ~= false and current ~= holder
end
local function position(key, group)
  local pending = pending_summary(key, group)
  if pending == nil then return nil end
  if pending[1] > 0 then return seq(pending[2]) - 1 end
  return delivered(key, group)
end
"#;

/// `KEYS[1]` stream, `KEYS[2]` the consumer's lease, `ARGV[1]` group,
/// `ARGV[2]` n, `ARGV[3]` the holder the ack is fenced for (empty: none):
/// acknowledges everything up to n. Returns `{1, last}` when done, `{2,
/// last}` when it acknowledged [`STEP`] entries and more are pending up to
/// n (call again), `{0, last}` when n is out of range, or `{3, 0}`, having
/// changed nothing, when another holder has the lease.
pub(crate) static ACK: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r#"
local key, group, n = KEYS[1], ARGV[1], tonumber(ARGV[2])
if fenced(KEYS[2], ARGV[3]) then return {3, 0} end
-- The common case first, in one XPENDING and one XACK: n itself is pending,
-- so it was delivered (n is in range and the group is past it).
local ok, pending = pcall(redis.call, 'XPENDING', key, group, '-', '0-' .. ARGV[2], 1000)
if ok and #pending > 0 and #pending < 1000 and pending[#pending][1] == '0-' .. ARGV[2] then
  local ids = {}
  for i, p in ipairs(pending) do ids[i] = p[1] end
  redis.call('XACK', key, group, unpack(ids))
  return {1, n}
end
local last = last_seq(key)
if n < 1 or n > last then return {0, last} end
local pos = position(key, group)
if pos == nil then
  redis.call('XGROUP', 'CREATE', key, group, '0-' .. ARGV[2], 'MKSTREAM')
  return {1, last}
end
if n <= pos then return {1, last} end
-- Oldest first, so the position only moves forward, call after call.
if not ack_range(key, group, '-', '0-' .. ARGV[2]) then return {2, last} end
-- Entries still pending are past n, and so is the group: only with none
-- left may it be behind n.
if pending_summary(key, group)[1] == 0 and delivered(key, group) < n then
  redis.call('XGROUP', 'SETID', key, group, '0-' .. ARGV[2])
end
return {1, last}
"#,
    )
});

/// `KEYS[1]` stream, `KEYS[2]` the consumer's lease, `ARGV[1]` group,
/// `ARGV[2]` the id to move to (`0-k`), `ARGV[3]` the holder the move is
/// fenced for (empty: none): sets the group's position and drops its
/// pending entries, so nothing stale is delivered again. Creates the group
/// if needed. Returns 1, or 3, having changed nothing, when another holder
/// has the lease.
///
/// One call, whatever the number of pending entries: dropping them is one
/// `XGROUP DELCONSUMER`, which Redis runs in C (0.34 s per million pending
/// entries on Redis 7.0.15, against 2.6 s for the Lua walk of an ack), and
/// a seek split into calls would leave, if interrupted, a pending list with
/// holes that a later ack could jump over.
pub(crate) static SEEK: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r#"
local key, group, id = KEYS[1], ARGV[1], ARGV[2]
if fenced(KEYS[2], ARGV[3]) then return 3 end
local summary = pending_summary(key, group)
if summary == nil then
  redis.call('XGROUP', 'CREATE', key, group, id, 'MKSTREAM')
  return 1
end
redis.call('XGROUP', 'SETID', key, group, id)
if type(summary[4]) == 'table' then
  for _, member in ipairs(summary[4]) do redis.call('XGROUP', 'DELCONSUMER', key, group, member[1]) end
end
return 1
"#,
    )
});

/// `KEYS[1]` stream, `KEYS[2]` the consumer's lease, `ARGV[1]` group,
/// `ARGV[2]` the holder, then the ids to acknowledge: one `XACK`, the
/// driver's common ack, unless another holder has the lease. Returns how
/// many were pending, or -1, having changed nothing, when fenced.
///
/// Lean, without [`HELPERS`], as [`APPEND`]: it runs for most acks.
pub(crate) static XACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if ARGV[2] ~= '' then
  local current = redis.call('GET', KEYS[2])
  if current ~= false and current ~= ARGV[2] then return -1 end
end
return redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 3))
"#,
    )
});

/// `KEYS[1]` the lease, `ARGV[1]` the holder, `ARGV[2]` its length in ms:
/// takes the lease or renews it, unless another holder has it. Returns 1
/// when the holder has it now, 0 otherwise.
pub(crate) static LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local current = redis.call('GET', KEYS[1])
if current ~= false and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#,
    )
});

/// `KEYS[1]` the lease, `ARGV[1]` the holder: ends the holder's lease, if
/// it has it.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"#,
    )
});

/// `KEYS[1]` stream, `ARGV[1]` group: creates the group at the beginning
/// unless it exists.
pub(crate) static ENSURE_GROUP: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r#"
if pending_summary(KEYS[1], ARGV[1]) == nil then
  redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0-0', 'MKSTREAM')
end
return 1
"#,
    )
});

/// `KEYS[1]` stream, `ARGV[1]` group: `{position or -1, last}`; changes
/// nothing.
pub(crate) static STATE: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r#"
local pos = position(KEYS[1], ARGV[1])
return {pos or -1, last_seq(KEYS[1])}
"#,
    )
});

/// `KEYS[1]` stream: the last sequence number, 0 when empty or missing.
pub(crate) static LAST: LazyLock<Script> =
    LazyLock::new(|| with_helpers("return last_seq(KEYS[1])"));

/// `KEYS[1]` stream, `KEYS[1 + i]` the dedup key of event i (none when
/// `ARGV[1]`, the window in ms, is 0); `ARGV[2]` the expected last number
/// (-1: any, 0: an empty log); `ARGV[3]` the number of events, then for
/// each its field count and fields. Stores the events that are not
/// duplicates, all or none: returns `{1, n1, n2, …}` (a negative number is
/// a duplicate of that event), or `{0, last}` on a conflict, having stored
/// nothing.
///
/// A duplicate is an event whose dedup key names a stored entry with the
/// same `source` and `id` (so a log deleted and created again within the
/// window never answers with another event), or an earlier event of the
/// batch; it is recognised before the condition is checked.
///
/// Lean on purpose, without [`HELPERS`]: it runs for every append, and a
/// script's own cost on the server is most of what it adds to an `XADD`.
pub(crate) static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local key, window, expected = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local count = tonumber(ARGV[3])
-- The number under which the event in ARGV[from..to] is stored, if
-- `stored`, the value of its dedup key, names an entry with its source and id.
local function stored_as(stored, from, to)
  if not stored then return nil end
  local entry = redis.call('XRANGE', key, '0-' .. stored, '0-' .. stored)
  if #entry == 0 then return nil end
  local want, same, f = {}, 0, entry[1][2]
  for j = from, to, 2 do
    if ARGV[j] == 'source' or ARGV[j] == 'id' then want[ARGV[j]] = ARGV[j + 1] end
  end
  for j = 1, #f, 2 do
    if want[f[j]] ~= nil and want[f[j]] == f[j + 1] then same = same + 1 end
  end
  if same == 2 then return tonumber(stored) end
end
if count == 1 and expected < 0 then
  -- The common append: deduplicated, no condition.
  local dup = stored_as(redis.call('GET', KEYS[2]), 5, #ARGV)
  if dup then return {1, -dup} end
  local n = tonumber(string.sub(redis.call('XADD', key, '0-*', unpack(ARGV, 5)), 3))
  redis.call('SET', KEYS[2], n, 'PX', window)
  return {1, n}
end
local arg, fresh, events, firsts, found = 4, false, {}, {}, {}
if window > 0 then
  -- One MGET per thousand keys, not a GET per event.
  for from = 2, count + 1, 1000 do
    local values = redis.call('MGET', unpack(KEYS, from, math.min(from + 999, count + 1)))
    for j, v in ipairs(values) do found[from - 2 + j] = v end
  end
end
for i = 1, count do
  local e = {from = arg + 1, to = arg + tonumber(ARGV[arg])}
  arg = e.to + 1
  if window > 0 then
    e.dup = stored_as(found[i], e.from, e.to)
    if not e.dup then
      e.same = firsts[KEYS[i + 1]]
      if not e.same then firsts[KEYS[i + 1]] = i end
    end
  end
  if not e.dup and not e.same then fresh = true end
  events[i] = e
end
if expected >= 0 and fresh then
  local last = 0
  if redis.call('EXISTS', key) == 1 then
    local info = redis.call('XINFO', 'STREAM', key)
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then last = tonumber(string.sub(info[i + 1], 3)) end
    end
  end
  if last ~= expected then return {0, last} end
end
local out = {1}
for i, e in ipairs(events) do
  if e.dup then out[i + 1] = -e.dup
  elseif e.same then out[i + 1] = -out[e.same + 1]
  else
    local n = tonumber(string.sub(redis.call('XADD', key, '0-*', unpack(ARGV, e.from, e.to)), 3))
    if window > 0 then redis.call('SET', KEYS[i + 1], n, 'PX', window) end
    out[i + 1] = n
  end
end
return out
"#,
    )
});

/// `KEYS[1]` stream: the first stored sequence number, the last plus one
/// when none is stored (or the stream is missing).
pub(crate) static FIRST: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r#"
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #first == 1 then return seq(first[1][1]) end
return last_seq(KEYS[1]) + 1
"#,
    )
});
