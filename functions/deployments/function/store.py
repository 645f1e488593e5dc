"""Where the deployments function keeps its state: Redis when REDIS_URL is set, else memory.

Each service's latest change per environment is one record. CDEvents may arrive out of order
and more than once (at-least-once delivery, Tekton and CI retries), so a change is applied only
if it is not older than the record it replaces: in Redis this compare-and-set is one Lua script,
so replicas of the function agree. A removal is kept as a record too (a tombstone), so an older
`deployed` arriving after it cannot resurrect the service.

Keys (all under CEMESH_STATE_PREFIX, which the mesh gives each function):
  <prefix>:env:<environment>  hash  service -> JSON record
  <prefix>:environments       set   environments ever seen
"""

import json

_APPLY = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and tonumber(decoded['ms']) and tonumber(decoded['ms']) > tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[4])
return 1
"""


def _visible(records):
    """Records of services currently deployed, by service name."""
    return {
        service: {k: v for k, v in record.items() if k != "ms"}
        for service, record in sorted(records.items())
        if not record.get("removed")
    }


class MemoryStore:
    """State in this process (one replica; lost on restart)."""

    def __init__(self):
        self._environments = {}

    async def apply(self, environment, service, record):
        services = self._environments.setdefault(environment, {})
        current = services.get(service)
        if current is not None and current["ms"] > record["ms"]:
            return False
        services[service] = record
        return True

    async def environment(self, environment):
        return _visible(self._environments.get(environment, {}))

    async def environments(self):
        return sorted(self._environments)

    async def close(self):
        return None


class RedisStore:
    """State in Redis, shared by every replica of the function."""

    def __init__(self, url, prefix):
        from redis.asyncio import Redis

        self._client = Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._prefix = prefix
        self._apply = self._client.register_script(_APPLY)

    def _env_key(self, environment):
        return f"{self._prefix}:env:{environment}"

    async def apply(self, environment, service, record):
        keys = [self._env_key(environment), f"{self._prefix}:environments"]
        args = [service, json.dumps(record, sort_keys=True), record["ms"], environment]
        return bool(await self._apply(keys=keys, args=args))

    async def environment(self, environment):
        raw = await self._client.hgetall(self._env_key(environment))
        records = {k.decode(): json.loads(v) for k, v in raw.items()}
        return _visible(records)

    async def environments(self):
        return sorted(
            m.decode() for m in await self._client.smembers(f"{self._prefix}:environments")
        )

    async def close(self):
        await self._client.aclose()


def open_store(env):
    """The store the environment asks for: REDIS_URL (empty or unset = memory)."""
    url = (env.get("REDIS_URL") or "").strip()
    if not url:
        return MemoryStore()
    prefix = env.get("CEMESH_STATE_PREFIX") or "cemesh:default:fn:deployments"
    return RedisStore(url, prefix)
