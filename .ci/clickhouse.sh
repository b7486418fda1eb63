#!/usr/bin/env bash
# Make a real ClickHouse answer on http://127.0.0.1:8123 for integration tests.
#
# Idempotent: safe to run any number of times, from CI or by hand.
#   - installs Debian's clickhouse-server/clickhouse-client only if missing
#     (the package cannot start its own service in our containers);
#   - if /ping already answers "Ok." it does nothing else;
#   - otherwise starts clickhouse-server in the background with our own small
#     config under $CH_DIR (default /tmp/etl-clickhouse) and polls /ping with a
#     30 s deadline.
# Debian ships ClickHouse 18.16: the config root element must be <yandex>.
set -euo pipefail

CH_DIR="${CH_DIR:-/tmp/etl-clickhouse}"
HTTP_PORT=8123
PING_URL="http://127.0.0.1:${HTTP_PORT}/ping"
DEADLINE_S=30

log() { echo "[clickhouse.sh] $*" >&2; }

ping_ok() {
  # curl may be missing on a minimal image; fall back to bash's /dev/tcp.
  if command -v curl >/dev/null 2>&1; then
    [ "$(curl -s --max-time 2 "$PING_URL" 2>/dev/null)" = "Ok." ]
  else
    local reply
    reply="$(exec 3<>"/dev/tcp/127.0.0.1/${HTTP_PORT}" 2>/dev/null &&
      printf 'GET /ping HTTP/1.0\r\n\r\n' >&3 && timeout 2 cat <&3 2>/dev/null || true)"
    [[ "$reply" == *"Ok."* ]]
  fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ping_ok; then
  log "already answering on ${PING_URL}"
  exit 0
fi

mkdir -p "$CH_DIR"
# Parallel test files may all find ClickHouse down and run this script at
# once (apt and two servers on one data dir would collide): serialise them,
# and let the later ones find it already answering.
exec 9>"$CH_DIR/.lock"
flock -w 180 9
if ping_ok; then
  log "already answering on ${PING_URL}"
  exit 0
fi

# Debian puts the server in /usr/sbin, which a non-login PATH may lack.
find_server() { command -v clickhouse-server 2>/dev/null || { [ -x /usr/sbin/clickhouse-server ] && echo /usr/sbin/clickhouse-server; }; }
CH_BIN="$(find_server || true)"
if [ -z "$CH_BIN" ]; then
  log "installing clickhouse-server (Debian package)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
  CH_BIN="$(find_server)"
fi

mkdir -p "$CH_DIR"/{data,tmp,user_files,format_schemas,log}
PID_FILE="$CH_DIR/clickhouse.pid"

# A server we started earlier may still be booting: wait for it rather than
# starting a second one that would fight over the same data dir.
already_started=false
# The comm check guards against a stale pid file whose pid was reused.
if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null &&
  [[ "$(cat "/proc/$(cat "$PID_FILE")/comm" 2>/dev/null)" == clickhouse* ]]; then
  already_started=true
  log "server pid $(cat "$PID_FILE") is running; waiting for it"
fi

if [ "$already_started" = false ]; then
  if port_in_use "$HTTP_PORT"; then
    log "port ${HTTP_PORT} is taken by something that is not answering /ping with Ok."
    exit 1
  fi
  # 9000 is ClickHouse's native port but other tools like it too.
  TCP_PORT=9000
  if port_in_use 9000; then TCP_PORT=9900; fi

  cat >"$CH_DIR/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>${CH_DIR}/log/clickhouse-server.log</log>
        <errorlog>${CH_DIR}/log/clickhouse-server.err.log</errorlog>
        <size>10M</size>
        <count>2</count>
    </logger>
    <http_port>${HTTP_PORT}</http_port>
    <tcp_port>${TCP_PORT}</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <!-- Small caches: this is a test server on a 2-core box. -->
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>${CH_DIR}/data/</path>
    <tmp_path>${CH_DIR}/tmp/</tmp_path>
    <user_files_path>${CH_DIR}/user_files/</user_files_path>
    <format_schema_path>${CH_DIR}/format_schemas/</format_schema_path>
    <users_config>${CH_DIR}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
</yandex>
EOF

  cat >"$CH_DIR/users.xml" <<'EOF'
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>::/0</ip>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF

  log "starting clickhouse-server (http ${HTTP_PORT}, tcp ${TCP_PORT}, dir ${CH_DIR})"
  # setsid + nohup: the server must outlive this script and the shell that ran it.
  # The server runs as root here (CI is root); it only warns about that.
  # 9>&- : the server must not inherit (and so hold forever) our lock.
  setsid nohup "$CH_BIN" --config-file="$CH_DIR/config.xml" \
    >>"$CH_DIR/log/stdout.log" 2>&1 </dev/null 9>&- &
  echo $! >"$PID_FILE"
fi

end=$((SECONDS + DEADLINE_S))
while [ "$SECONDS" -lt "$end" ]; do
  if ping_ok; then
    log "ready on ${PING_URL}"
    exit 0
  fi
  if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
    log "clickhouse-server exited; last log lines:"
    tail -n 20 "$CH_DIR/log/clickhouse-server.err.log" "$CH_DIR/log/stdout.log" >&2 2>/dev/null || true
    exit 1
  fi
  sleep 0.2
done
log "no answer on ${PING_URL} within ${DEADLINE_S}s; see ${CH_DIR}/log/"
exit 1
