import type { Redis } from 'ioredis';

/**
 * The server-side halves of the build and the swap. Each runs atomically in Redis, which
 * is what the guarantees in this folder's README rest on.
 */

/** Keyed lines (`"<field, JSON-encoded>"\t<value>\n`) into the hash KEYS[1]; returns
 *  {fields created, lines, bytes of fields and values}. A field is sent JSON-encoded, so
 *  it is decoded here only when it holds an escape. */
const HASH_LOAD_BODY = `
local len, pos = #data, 1
local created, lines, bytes, na = 0, 0, 0, 0
local args = {}
while pos <= len do
  local nl = string.find(data, '\\n', pos, true) or (len + 1)
  local tab = string.find(data, '\\t', pos, true)
  if not tab or tab > nl or tab - pos < 2 or string.byte(data, pos) ~= 34 or string.byte(data, tab - 1) ~= 34 then
    return redis.error_reply('ERR etl-load: line ' .. lines .. ' is not a keyed line')
  end
  local field = string.sub(data, pos + 1, tab - 2)
  if string.find(field, '\\\\', 1, true) then
    local ok, decoded = pcall(cjson.decode, string.sub(data, pos, tab - 1))
    if not ok or type(decoded) ~= 'string' then
      return redis.error_reply('ERR etl-load: line ' .. lines .. ' has a key that is not a JSON string of valid Unicode')
    end
    field = decoded
  end
  if field == '' then return redis.error_reply('ERR etl-load: line ' .. lines .. ' has an empty key') end
  local value = string.sub(data, tab + 1, nl - 1)
  args[na + 1] = field
  args[na + 2] = value
  na = na + 2
  bytes = bytes + #field + #value
  lines = lines + 1
  if na >= 1000 then
    created = created + redis.call('HSET', key, unpack(args, 1, na))
    na = 0
  end
  pos = nl + 1
end
if na > 0 then created = created + redis.call('HSET', key, unpack(args, 1, na)) end
return {created, lines, bytes}`;
const HASH_LOAD = `local function load_hash(key, data)
${HASH_LOAD_BODY}
end
local r = load_hash(KEYS[1], ARGV[1])
if r.err then return r end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return r`;

/**
 * The streaming build (./stream-build.ts) keeps its position beside the build key, in a
 * state hash: `owner` (the attempt building), `pos` ("<chunk>:<piece>", the next piece to
 * load), `sent`, `bytes`, `rows` (JSON elements), `done`. BUILD_OPEN takes the build over
 * for an attempt (an older one is refused from then on); LOAD_AT loads one piece only if
 * it is the next one and the caller owns the build, and advances `pos` in the same atomic
 * call: each piece is loaded exactly once, whoever loads it.
 * KEYS: build key, state key.
 */
const BUILD_GUARD = `
local me = tonumber(ARGV[1])
local owner = tonumber(redis.call('HGET', KEYS[2], 'owner') or '0')
if owner > me then return redis.error_reply('ERR etl-owner: attempt ' .. me .. ' was superseded by attempt ' .. owner) end`;

/** KEYS: build, state, the run's list of builds. ARGV: attempt, ttl ms. Returns {pos,
 *  sent, bytes, rows, done}. The list lets the publish clean up builds of abandoned epochs. */
export const BUILD_OPEN = `${BUILD_GUARD}
-- No state, or state without its build (renamed by a publish whose step was not yet
-- recorded, evicted, lost): start over, never continue onto nothing.
if redis.call('EXISTS', KEYS[2]) == 0 or redis.call('EXISTS', KEYS[1]) == 0 then redis.call('UNLINK', KEYS[1], KEYS[2]) end
redis.call('HSET', KEYS[2], 'owner', me)
redis.call('SADD', KEYS[3], KEYS[1], KEYS[2])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local st = redis.call('HMGET', KEYS[2], 'pos', 'sent', 'bytes', 'rows', 'done')
return {st[1] or '0:0', tonumber(st[2] or '0'), tonumber(st[3] or '0'), tonumber(st[4] or '0'), tonumber(st[5] or '0')}`;

/** ARGV: attempt, ttl ms, pos, next pos, shape, piece, elements (json). Returns
 *  {fields created, lines, bytes}, as HASH_LOAD. */
export const LOAD_AT = `${BUILD_GUARD}
if owner < me then return redis.error_reply('ERR etl-lost: the build state of attempt ' .. me .. ' is gone (Redis lost it); retrying builds again') end
local at = redis.call('HGET', KEYS[2], 'pos') or '0:0'
if at ~= ARGV[3] then return redis.error_reply('ERR etl-pos: the build is at ' .. at .. ', not ' .. ARGV[3]) end
local created, lines, bytes = 0, 0, 0
if ARGV[5] == 'hash' then
  local r = load_hash(KEYS[1], ARGV[6])
  if r.err then return r end
  created, lines, bytes = r[1], r[2], r[3]
elseif #ARGV[6] > 0 then
  local rows = tonumber(redis.call('HGET', KEYS[2], 'rows') or '0')
  local text = (rows == 0 and '[' or ',') .. ARGV[6]
  redis.call('APPEND', KEYS[1], text)
  lines, bytes = tonumber(ARGV[7]), #text
  redis.call('HINCRBY', KEYS[2], 'rows', lines)
end
redis.call('HSET', KEYS[2], 'pos', ARGV[4])
redis.call('HINCRBY', KEYS[2], 'sent', lines)
redis.call('HINCRBY', KEYS[2], 'bytes', bytes)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {created, lines, bytes}`;

/** ARGV: attempt, ttl ms, shape. Closes a JSON array once; returns {size, bytes, sent}. */
export const BUILD_FINISH = `${BUILD_GUARD}
if owner < me then return redis.error_reply('ERR etl-lost: the build state of attempt ' .. me .. ' is gone (Redis lost it); retrying builds again') end
if ARGV[3] == 'json' and redis.call('HGET', KEYS[2], 'done') ~= '1' then
  local rows = tonumber(redis.call('HGET', KEYS[2], 'rows') or '0')
  local text = rows == 0 and '[]' or ']'
  redis.call('APPEND', KEYS[1], text)
  redis.call('HINCRBY', KEYS[2], 'bytes', #text)
  redis.call('HSET', KEYS[2], 'done', '1')
end
local size
if ARGV[3] == 'hash' then size = redis.call('HLEN', KEYS[1]) else size = redis.call('STRLEN', KEYS[1]) end
return {size, tonumber(redis.call('HGET', KEYS[2], 'bytes') or '0'), tonumber(redis.call('HGET', KEYS[2], 'sent') or '0')}`;

/** LOAD_AT with HASH_LOAD's loop as its helper. */
export const LOAD_AT_SCRIPT = `local function load_hash(key, data)
${HASH_LOAD_BODY}
end
${LOAD_AT}`;

/** Loads HASH_LOAD; its sha is then called with EVALSHA(sha, 1, buildKey, piece, ttlMs). */
export async function loadHashLoad(redis: Redis): Promise<string> {
  return await redis.script('LOAD', HASH_LOAD) as string;
}

/** The swap of every dataset of one step attempt, and their metas, in one script: a
 *  reader of several datasets (and their metas) never sees two runs' versions at once, and
 *  either all of them change or none does. A script rather than MULTI because MULTI does
 *  not roll back: if a build key had vanished (expired, deleted by hand) RENAME would fail
 *  inside EXEC while the rest still ran. Here nothing changes unless every build key holds
 *  exactly what was written, and unless the attempt fence allows it: KEYS[1] holds the
 *  highest attempt of the run's step that has published; an older attempt (a zombie that
 *  outlived its takeover) is refused, whatever it believes. Old versions are UNLINKed first
 *  because RENAME would free them synchronously (~0.5 s of blocked Redis per million hash
 *  fields). An empty hash does not exist as a key, so publishing 0 rows leaves the dataset
 *  deleted.
 *  KEYS: fence, then (build key, dataset key, meta key) per dataset;
 *  ARGV: attempt ('' = unfenced), fence TTL ms, then (meta JSON, shape, expected size) per dataset. */
export const PUBLISH_ALL = `
local attempt = tonumber(ARGV[1])
if attempt then
  local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
  if cur > attempt then
    return redis.error_reply('ERR etl-fence: attempt ' .. attempt .. ' was superseded by attempt ' .. cur)
  end
end
local n = (#KEYS - 1) / 3
for i = 0, n - 1 do
  local tmp, shape, want = KEYS[2 + i * 3], ARGV[4 + i * 3], ARGV[5 + i * 3]
  local size
  if shape == 'hash' then size = redis.call('HLEN', tmp) else size = redis.call('STRLEN', tmp) end
  if size ~= tonumber(want) then
    return redis.error_reply('ERR build key ' .. tmp .. ' holds ' .. size .. ', expected ' .. want .. ' (expired or modified?)')
  end
end
if attempt then redis.call('SET', KEYS[1], attempt, 'PX', ARGV[2]) end
for i = 0, n - 1 do
  local tmp, key, meta = KEYS[2 + i * 3], KEYS[3 + i * 3], KEYS[4 + i * 3]
  redis.call('UNLINK', key)
  if tonumber(ARGV[5 + i * 3]) > 0 then
    redis.call('RENAME', tmp, key)
    redis.call('PERSIST', key)
  end
  redis.call('SET', meta, ARGV[3 + i * 3])
end
return n`;
