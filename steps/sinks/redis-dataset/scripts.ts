import type { Redis } from 'ioredis';

/**
 * The server-side halves of the build and the swap. Each runs atomically in Redis, which
 * is what the guarantees in this folder's README rest on.
 */

/** Keyed lines (`"<field, JSON-encoded>"\t<value>\n`) into the hash KEYS[1]; returns
 *  {fields created, lines, bytes of fields and values}. A field is sent JSON-encoded, so
 *  it is decoded here only when it holds an escape. */
const HASH_LOAD = `
local data, key = ARGV[1], KEYS[1]
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
redis.call('PEXPIRE', key, ARGV[2])
return {created, lines, bytes}`;

/** Loads HASH_LOAD; its sha is then called with EVALSHA(sha, 1, buildKey, piece, ttlMs). */
export async function loadHashLoad(redis: Redis): Promise<string> {
  return await redis.script('LOAD', HASH_LOAD) as string;
}

/** The swap. A script rather than MULTI because MULTI does not roll back: if the build key
 *  had vanished (expired, deleted by hand) RENAME would fail inside EXEC while the meta SET
 *  still ran. Here nothing changes unless the build key holds exactly what we wrote. The old
 *  version is UNLINKed first because RENAME would free it synchronously (~0.5 s of blocked
 *  Redis per million hash fields). An empty hash does not exist as a key, so publishing 0
 *  rows leaves the dataset deleted.
 *  KEYS: build key, dataset key, meta key; ARGV: meta JSON, shape, expected size. */
export const PUBLISH = `
local size
if ARGV[2] == 'hash' then size = redis.call('HLEN', KEYS[1]) else size = redis.call('STRLEN', KEYS[1]) end
if size ~= tonumber(ARGV[3]) then
  return redis.error_reply('ERR build key ' .. KEYS[1] .. ' holds ' .. size .. ', expected ' .. ARGV[3] .. ' (expired or modified?)')
end
redis.call('UNLINK', KEYS[2])
if size > 0 then
  redis.call('RENAME', KEYS[1], KEYS[2])
  redis.call('PERSIST', KEYS[2])
end
redis.call('SET', KEYS[3], ARGV[1])
return size`;
