#!/usr/bin/env bash
# Starts, stops, restarts and freezes throwaway RabbitMQ, PostgreSQL and Redis
# servers that live entirely inside one folder: data, logs, sockets, pid files,
# the Erlang cookie and epmd. Used by scripts/run.sh (folder .run/ in the
# checkout) and by the test harness (a temp folder per test run).
#
#   servers.sh up DIR               start every server not running; write DIR/env
#   servers.sh down DIR [--kill]    stop every server started in DIR (--kill:
#                                   SIGKILL, for throwaway folders)
#   servers.sh start|stop|restart|freeze|thaw NAME DIR   one server
#   servers.sh status DIR           one line per server
#
# NAME is rabbitmq, postgres or redis. Ports are picked free on the first `up`
# and kept in DIR/ports so URLs stay stable across restarts. Secrets are
# random per folder (DIR/secrets, mode 600): nothing here has a default
# password. Every wait has a deadline; a server that does not come up is named
# and the command exits non-zero.
set -euo pipefail

die() { echo "servers: $*" >&2; exit 1; }
log() { echo "servers: $*" >&2; }

PG_BIN=""
for v in 17 16 15 14 13; do
  if [[ -x /usr/lib/postgresql/$v/bin/pg_ctl ]]; then PG_BIN=/usr/lib/postgresql/$v/bin; break; fi
done
RMQ_BIN=/usr/lib/rabbitmq/bin

# One RabbitMQ user per platform process ("sb-<name>", vhost "/"), with the
# permissions of protocol §11.6: configure, write, read, then one topic
# exchange with its write and read routing-key patterns. These lines are
# exactly broker::platform_permissions() (tests/unit/broker checks it).
# Only sb-store may write to sb.events or configure the platform exchanges.
platform_services=(store registry edge identity)
perm_store=('^(sub\.store\..+|rpc\.store(\..+)?|sb\.head\.store\..+|sb\.regreq\..+|amq\.gen-.+|store\..+|sb\.(events|ingest|signals|rpc|dlx))$' '^(sb\.ingest|sb\.signals|sb\.rpc|sb\.dlx|amq\.default|sub\.store\..+|rpc\.store(\..+)?|sb\.head\.store\..+|sb\.regreq\..+|amq\.gen-.+|store\..+|sb\.events)$' '^(sb\.events|sb\.signals|sb\.rpc|sb\.dlx|amq\.rabbitmq\.reply-to|sub\.store\..+|rpc\.store(\..+)?|sb\.head\.store\..+|sb\.regreq\..+|amq\.gen-.+|store\..+|sb\.ingest)$' 'sb.dlx' '^sub\.store\..+$' '^sub\.store\..+$')
perm_registry=('^(sub\.registry\..+|rpc\.registry(\..+)?|sb\.head\.registry\..+|sb\.regreq\..+|amq\.gen-.+|registry\..+)$' '^(sb\.ingest|sb\.signals|sb\.rpc|sb\.dlx|amq\.default|sub\.registry\..+|rpc\.registry(\..+)?|sb\.head\.registry\..+|sb\.regreq\..+|amq\.gen-.+|registry\..+)$' '^(sb\.events|sb\.signals|sb\.rpc|sb\.dlx|amq\.rabbitmq\.reply-to|sub\.registry\..+|rpc\.registry(\..+)?|sb\.head\.registry\..+|sb\.regreq\..+|amq\.gen-.+|registry\..+)$' 'sb.dlx' '^sub\.registry\..+$' '^sub\.registry\..+$')
perm_edge=('^(sub\.edge\..+|rpc\.edge(\..+)?|sb\.head\.edge\..+|sb\.regreq\..+|amq\.gen-.+|edge\..+)$' '^(sb\.ingest|sb\.signals|sb\.rpc|sb\.dlx|amq\.default|sub\.edge\..+|rpc\.edge(\..+)?|sb\.head\.edge\..+|sb\.regreq\..+|amq\.gen-.+|edge\..+)$' '^(sb\.events|sb\.signals|sb\.rpc|sb\.dlx|amq\.rabbitmq\.reply-to|sub\.edge\..+|rpc\.edge(\..+)?|sb\.head\.edge\..+|sb\.regreq\..+|amq\.gen-.+|edge\..+|sub\..+\.parked)$' 'sb.dlx' '^sub\.edge\..+$' '^sub\.edge\..+$')
perm_identity=('^(sub\.identity\..+|rpc\.identity(\..+)?|sb\.head\.identity\..+|sb\.regreq\..+|amq\.gen-.+|identity\..+)$' '^(sb\.ingest|sb\.signals|sb\.rpc|sb\.dlx|amq\.default|sub\.identity\..+|rpc\.identity(\..+)?|sb\.head\.identity\..+|sb\.regreq\..+|amq\.gen-.+|identity\..+)$' '^(sb\.events|sb\.signals|sb\.rpc|sb\.dlx|amq\.rabbitmq\.reply-to|sub\.identity\..+|rpc\.identity(\..+)?|sb\.head\.identity\..+|sb\.regreq\..+|amq\.gen-.+|identity\..+)$' 'sb.dlx' '^sub\.identity\..+$' '^sub\.identity\..+$')

port_free() { # a port is free when nothing listens on it
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768+
# by default): a port picked there can be taken as the source port of an
# outgoing connection (the management API calls below) before the server binds.
pick_port() { # a random free port in 10000..31999 that is not already chosen
  local p i
  for i in $(seq 1 200); do
    p=$((10000 + RANDOM % 22000))
    if port_free "$p" && ! grep -q "=$p\$" "$DIR/ports" 2>/dev/null; then echo "$p"; return; fi
  done
  die "no free port found"
}

rand_secret() { head -c 18 /dev/urandom | base64 | tr '+/' 'xy'; }

as_postgres() { # initdb and pg_ctl refuse to run as root
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

load_state() {
  mkdir -p "$DIR"
  DIR="$(cd "$DIR" && pwd)"
  chmod 755 "$DIR"
  if [[ ! -f "$DIR/ports" ]]; then
    : >"$DIR/ports"
    for name in RABBITMQ_PORT RABBITMQ_MGMT_PORT RABBITMQ_DIST_PORT EPMD_PORT POSTGRES_PORT REDIS_PORT; do
      echo "$name=$(pick_port)" >>"$DIR/ports"
    done
  fi
  if [[ ! -f "$DIR/secrets" ]]; then
    (umask 077; {
      echo "RABBITMQ_PASSWORD=$(rand_secret)"
      echo "POSTGRES_PASSWORD=$(rand_secret)"
      echo "REDIS_PASSWORD=$(rand_secret)"
      echo "ERLANG_COOKIE=$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
    } >"$DIR/secrets")
  fi
  # The platform users' passwords (added to folders made before they existed).
  local svc var
  for svc in "${platform_services[@]}"; do
    var="RABBITMQ_$(echo "$svc" | tr a-z A-Z)_PASSWORD"
    grep -q "^$var=" "$DIR/secrets" || echo "$var=$(rand_secret)" >>"$DIR/secrets"
  done
  # shellcheck disable=SC1091
  source "$DIR/ports"
  # shellcheck disable=SC1091
  source "$DIR/secrets"
  mkdir -p "$DIR/log"
  RMQ_NODE="sb${RABBITMQ_PORT}@localhost"
}

write_env() {
  cat >"$DIR/env" <<EOF
SB_RABBITMQ_URL=amqp://sb:${RABBITMQ_PASSWORD}@127.0.0.1:${RABBITMQ_PORT}/
SB_RABBITMQ_MGMT_URL=http://127.0.0.1:${RABBITMQ_MGMT_PORT}
SB_RABBITMQ_USER=sb
SB_RABBITMQ_PASSWORD=${RABBITMQ_PASSWORD}
SB_POSTGRES_URL=postgresql://sb:${POSTGRES_PASSWORD}@127.0.0.1:${POSTGRES_PORT}/switchboard
SB_REDIS_URL=redis://:${REDIS_PASSWORD}@127.0.0.1:${REDIS_PORT}/0
SB_SERVERS_DIR=${DIR}
EOF
  local svc var
  for svc in "${platform_services[@]}"; do
    var="RABBITMQ_$(echo "$svc" | tr a-z A-Z)_PASSWORD"
    echo "SB_RABBITMQ_$(echo "$svc" | tr a-z A-Z)_URL=amqp://sb-${svc}:${!var}@127.0.0.1:${RABBITMQ_PORT}/" >>"$DIR/env"
  done
  chmod 600 "$DIR/env"
}

# ---------------------------------------------------------------- RabbitMQ
rmq_env() {
  export HOME="$DIR/rabbitmq/home"
  export RABBITMQ_NODENAME="$RMQ_NODE"
  export RABBITMQ_NODE_PORT="$RABBITMQ_PORT"
  export RABBITMQ_DIST_PORT="$RABBITMQ_DIST_PORT"
  export ERL_EPMD_PORT="$EPMD_PORT"
  export ERL_EPMD_ADDRESS=127.0.0.1
  export RABBITMQ_MNESIA_BASE="$DIR/rabbitmq/mnesia"
  export RABBITMQ_LOG_BASE="$DIR/log"
  export RABBITMQ_PID_FILE="$DIR/rabbitmq/rabbitmq.pid"
  export RABBITMQ_CONFIG_FILE="$DIR/rabbitmq/rabbitmq.conf"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/rabbitmq/enabled_plugins"
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+sbwt none +sbwtdcpu none +sbwtdio none"
  export RABBITMQ_CTL_ERL_ARGS="+sbwt none"
}

rmq_pid() { cat "$DIR/rabbitmq/rabbitmq.pid" 2>/dev/null || true; }
alive() { [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; }

rmq_start() {
  rmq_env
  if alive "$(rmq_pid)"; then return 0; fi
  port_free "$RABBITMQ_PORT" || die "rabbitmq: port $RABBITMQ_PORT is taken by another process"
  port_free "$RABBITMQ_MGMT_PORT" || die "rabbitmq: management port $RABBITMQ_MGMT_PORT is taken"
  mkdir -p "$HOME" "$RABBITMQ_MNESIA_BASE"
  (umask 077; printf '%s' "$ERLANG_COOKIE" >"$HOME/.erlang.cookie")
  cat >"$RABBITMQ_CONFIG_FILE" <<EOF
listeners.tcp.default = 127.0.0.1:${RABBITMQ_PORT}
management.tcp.port = ${RABBITMQ_MGMT_PORT}
management.tcp.ip = 127.0.0.1
loopback_users = none
default_user = sb
default_pass = ${RABBITMQ_PASSWORD}
default_user_tags.administrator = true
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
EOF
  echo '[rabbitmq_management].' >"$RABBITMQ_ENABLED_PLUGINS_FILE"
  "$RMQ_BIN/rabbitmq-server" -detached >>"$DIR/log/rabbitmq-start.log" 2>&1 \
    || die "rabbitmq failed to start; see $DIR/log/rabbitmq-start.log"
  if ! "$RMQ_BIN/rabbitmqctl" -n "$RMQ_NODE" wait --timeout 120 "$RABBITMQ_PID_FILE" \
       >>"$DIR/log/rabbitmq-start.log" 2>&1; then
    die "rabbitmq failed to start within 120 s; see $DIR/log/ (${RMQ_NODE}.log)"
  fi
  # The node can boot and then die on a listener clash: confirm the port answers.
  local deadline=$((SECONDS + 30))
  until ! port_free "$RABBITMQ_PORT"; do
    ((SECONDS < deadline)) || die "rabbitmq: AMQP port ${RABBITMQ_PORT} never opened; see $DIR/log/"
    sleep 0.1
  done
  until ! port_free "$RABBITMQ_MGMT_PORT"; do
    ((SECONDS < deadline)) || die "rabbitmq: management port never opened; see $DIR/log/"
    sleep 0.1
  done
}

json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g')"; }

mgmt_put() { # path json: PUT to the management API as the admin, with retries (it starts last)
  local deadline=$((SECONDS + 30))
  until curl -fsS -o /dev/null -u "sb:${RABBITMQ_PASSWORD}" -H 'content-type: application/json' \
      -X PUT "http://127.0.0.1:${RABBITMQ_MGMT_PORT}/api/$1" -d "$2" 2>/dev/null; do
    ((SECONDS < deadline)) || die "rabbitmq: management API refused PUT /api/$1"
    sleep 0.2
  done
}

# The platform exchanges (so every process finds them, whatever the start
# order: only sb-store may declare them) and one user per platform process.
rmq_users() {
  local x svc var
  for x in sb.events:topic sb.ingest:direct sb.signals:topic sb.rpc:direct sb.dlx:topic; do
    mgmt_put "exchanges/%2F/${x%%:*}" "{\"type\":\"${x#*:}\",\"durable\":true,\"auto_delete\":false,\"internal\":false,\"arguments\":{}}"
  done
  for svc in "${platform_services[@]}"; do
    var="RABBITMQ_$(echo "$svc" | tr a-z A-Z)_PASSWORD"
    local -n p="perm_${svc}"
    mgmt_put "users/sb-${svc}" "{\"password\":$(json_str "${!var}"),\"tags\":\"\"}"
    mgmt_put "permissions/%2F/sb-${svc}" \
      "{\"configure\":$(json_str "${p[0]}"),\"write\":$(json_str "${p[1]}"),\"read\":$(json_str "${p[2]}")}"
    mgmt_put "topic-permissions/%2F/sb-${svc}" \
      "{\"exchange\":$(json_str "${p[3]}"),\"write\":$(json_str "${p[4]}"),\"read\":$(json_str "${p[5]}")}"
    unset -n p
  done
}

rmq_stop() {
  rmq_env
  local pid; pid="$(rmq_pid)"
  if alive "$pid"; then
    kill -CONT "$pid" 2>/dev/null || true
    # Erlang takes SIGTERM as a graceful init:stop(); rabbitmqctl would spend
    # seconds booting a VM of its own just to ask for the same thing.
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/rabbitmq/rabbitmq.pid"
}

rmq_kill_epmd() {
  rmq_env
  epmd -port "$EPMD_PORT" -kill >/dev/null 2>&1 || true
}

# -------------------------------------------------------------- PostgreSQL
pg_data() { echo "$DIR/postgres/data"; }

pg_start() {
  [[ -n "$PG_BIN" ]] || die "postgres: no PostgreSQL server binaries found (install postgresql)"
  local data; data="$(pg_data)"
  if [[ -f "$data/postmaster.pid" ]] && alive "$(head -1 "$data/postmaster.pid")"; then return 0; fi
  port_free "$POSTGRES_PORT" || die "postgres: port $POSTGRES_PORT is taken by another process"
  mkdir -p "$DIR/postgres"
  if [[ $(id -u) -eq 0 ]]; then chown postgres: "$DIR/postgres"; fi
  chmod 700 "$DIR/postgres"
  if [[ ! -f "$data/PG_VERSION" ]]; then
    local pw="$DIR/postgres/.pw"
    (umask 077; echo "$POSTGRES_PASSWORD" >"$pw")
    [[ $(id -u) -eq 0 ]] && chown postgres: "$pw"
    as_postgres "$PG_BIN/initdb" -D "$data" -U sb --pwfile="$pw" -A scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >>"$DIR/log/postgres-init.log" 2>&1 \
      || die "postgres: initdb failed; see $DIR/log/postgres-init.log"
    rm -f "$pw"
    cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = ${POSTGRES_PORT}
unix_socket_directories = '${DIR}/postgres'
max_connections = 300
shared_buffers = 256MB
fsync = on
synchronous_commit = on
log_min_messages = warning
EOF
  fi
  touch "$DIR/log/postgres.log"
  [[ $(id -u) -eq 0 ]] && chown postgres: "$DIR/log/postgres.log"
  as_postgres "$PG_BIN/pg_ctl" -D "$data" -l "$DIR/log/postgres.log" -w -t 60 start >/dev/null \
    || die "postgres failed to start; see $DIR/log/postgres.log"
  if ! PGPASSWORD="$POSTGRES_PASSWORD" psql -h 127.0.0.1 -p "$POSTGRES_PORT" -U sb -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='switchboard'" | grep -q 1; then
    PGPASSWORD="$POSTGRES_PASSWORD" psql -h 127.0.0.1 -p "$POSTGRES_PORT" -U sb -d postgres -q \
      -c "CREATE DATABASE switchboard" || die "postgres: could not create database switchboard"
  fi
}

pg_stop() {
  local data; data="$(pg_data)"
  [[ -f "$data/postmaster.pid" ]] || return 0
  local pid; pid="$(head -1 "$data/postmaster.pid")"
  kill -CONT "$pid" 2>/dev/null || true
  as_postgres "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 || kill -KILL "$pid" 2>/dev/null || true
}

pg_pid() { local f; f="$(pg_data)/postmaster.pid"; [[ -f "$f" ]] && head -1 "$f" || true; }

# ------------------------------------------------------------------- Redis
redis_pid() { cat "$DIR/redis/redis.pid" 2>/dev/null || true; }

redis_start() {
  if alive "$(redis_pid)"; then return 0; fi
  port_free "$REDIS_PORT" || die "redis: port $REDIS_PORT is taken by another process"
  mkdir -p "$DIR/redis"
  (umask 077; cat >"$DIR/redis/redis.conf" <<EOF
port ${REDIS_PORT}
bind 127.0.0.1
dir ${DIR}/redis
save ""
appendonly no
daemonize yes
pidfile ${DIR}/redis/redis.pid
logfile ${DIR}/log/redis.log
requirepass ${REDIS_PASSWORD}
EOF
)
  redis-server "$DIR/redis/redis.conf" || die "redis failed to start; see $DIR/log/redis.log"
  local deadline=$((SECONDS + 10))
  until redis-cli -h 127.0.0.1 -p "$REDIS_PORT" -a "$REDIS_PASSWORD" --no-auth-warning ping 2>/dev/null | grep -q PONG; do
    ((SECONDS < deadline)) || die "redis failed to start within 10 s; see $DIR/log/redis.log"
    sleep 0.02
  done
}

redis_stop() {
  local pid; pid="$(redis_pid)"
  if alive "$pid"; then
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.02; done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/redis/redis.pid"
}

# -------------------------------------------------------------- dispatch
server_pid() {
  case "$1" in
    rabbitmq) rmq_pid ;;
    postgres) pg_pid ;;
    redis) redis_pid ;;
    *) die "unknown server '$1' (rabbitmq, postgres, redis)" ;;
  esac
}

one() {
  local action="$1" name="$2"
  case "$action:$name" in
    start:rabbitmq) rmq_start ;;
    start:postgres) pg_start ;;
    start:redis) redis_start ;;
    stop:rabbitmq) rmq_stop ;;
    stop:postgres) pg_stop ;;
    stop:redis) redis_stop ;;
    restart:*) one stop "$name"; one start "$name" ;;
    freeze:*) local p; p="$(server_pid "$name")"; alive "$p" || die "$name is not running"; kill -STOP "$p" ;;
    thaw:*) local p; p="$(server_pid "$name")"; alive "$p" || die "$name is not running"; kill -CONT "$p" ;;
    *) die "unknown action '$action' or server '$name'" ;;
  esac
}

cmd="${1:-}"
case "$cmd" in
  up)
    DIR="${2:?usage: servers.sh up DIR}"; load_state
    # Start all three at once: RabbitMQ's boot dominates (~6 s).
    failed=()
    rmq_start & r=$!
    pg_start & p=$!
    redis_start & s=$!
    wait $r || failed+=(rabbitmq)
    wait $p || failed+=(postgres)
    wait $s || failed+=(redis)
    if [[ ! " ${failed[*]} " =~ " rabbitmq " ]]; then rmq_users || failed+=(rabbitmq-users); fi
    write_env
    if [[ ${#failed[@]} -gt 0 ]]; then die "failed to start: ${failed[*]}"; fi
    ;;
  down)
    DIR="${2:?usage: servers.sh down DIR}"
    [[ -d "$DIR" ]] || exit 0
    load_state
    if [[ "${3:-}" == "--kill" ]]; then
      for n in rabbitmq postgres redis; do
        p="$(server_pid "$n")"
        if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
      done
      # A Redis whose pid file was lost (an interrupted run) still carries its
      # port in its title: the folder is being thrown away, so take it too.
      pkill -KILL -f "^redis-server 127\.0\.0\.1:${REDIS_PORT}( |\$)" 2>/dev/null || true
      # PostgreSQL's children exit once the postmaster is gone; wait for them.
      deadline=$((SECONDS + 10))
      while pgrep -f -- "-D $(pg_data)" >/dev/null 2>&1 && ((SECONDS < deadline)); do sleep 0.05; done
      rmq_kill_epmd
      exit 0
    fi
    rmq_stop & r=$!
    pg_stop & p=$!
    redis_stop & s=$!
    wait $r $p $s || true
    rmq_kill_epmd
    ;;
  status)
    DIR="${2:?usage: servers.sh status DIR}"; load_state
    for n in rabbitmq postgres redis; do
      p="$(server_pid "$n")"
      if alive "$p"; then echo "$n running (pid $p)"; else echo "$n stopped"; fi
    done
    ;;
  start|stop|restart|freeze|thaw)
    name="${2:?usage: servers.sh $cmd NAME DIR}"; DIR="${3:?usage: servers.sh $cmd NAME DIR}"
    load_state; one "$cmd" "$name"
    ;;
  *) die "usage: servers.sh up|down|status DIR | start|stop|restart|freeze|thaw NAME DIR" ;;
esac
