#!/usr/bin/env bash
# The run command: installs what is missing, builds (Release), starts local
# RabbitMQ (with management), PostgreSQL and Redis in .run/ inside the
# checkout, then the platform's processes, and prints where to look.
# Running it again is harmless: whatever already runs is left alone.
# Stop everything it started with scripts/stop.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
run="$root/.run"
jobs="${SB_JOBS:-2}"
# The platform's processes, in start order (services/<name>/sb-<name>); each
# connects to RabbitMQ as its own user sb-<name> (scripts/servers.sh makes them).
processes=(store registry edge)

scripts/deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j "$jobs"
# The identity service joins once it is built.
if [[ -x "$root/build/release/services/identity/sb-identity" ]]; then processes+=(identity); fi

mkdir -p "$run/log" "$run/pids"
scripts/servers.sh up "$run/servers"

# Ports of the platform's own processes: chosen free once, then kept; below
# the kernel's ephemeral range (32768+), like the servers' (servers.sh).
touch "$run/platform.env"
pick() {
  local p
  for _ in $(seq 1 200); do
    p=$((10000 + RANDOM % 22000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null &&
       ! grep -q "=$p\$" "$run/servers/ports" "$run/platform.env"; then
      echo "$p"; return
    fi
  done
  echo "run: no free port" >&2; exit 1
}
# One admin/HTTP port per process, chosen once.
for name in "${processes[@]}"; do
  var="SB_$(echo "$name" | tr a-z A-Z)_HTTP_PORT"
  grep -q "^$var=" "$run/platform.env" || echo "$var=$(pick)" >>"$run/platform.env"
done
# The edge's token signing key: random, made once, kept with the ports.
grep -q "^SB_AUTH_JWT_SECRET=" "$run/platform.env" ||
  echo "SB_AUTH_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >>"$run/platform.env"
# The identity service's first super admin (tenant _platform): made once, kept.
grep -q "^SB_IDENTITY_BOOTSTRAP_PASSWORD=" "$run/platform.env" ||
  echo "SB_IDENTITY_BOOTSTRAP_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr '+/' 'xy')" >>"$run/platform.env"
chmod 600 "$run/platform.env"
set -a
# shellcheck disable=SC1091
source "$run/servers/env"
# shellcheck disable=SC1091
source "$run/platform.env"
set +a

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_process() { # name, extra env...
  local name="$1"; shift
  local pidf="$run/pids/$name.pid"
  if alive "$pidf"; then echo "run: $name already running (pid $(cat "$pidf"))"; return; fi
  env "$@" "$root/build/release/services/$name/sb-$name" >>"$run/log/$name.log" 2>&1 &
  echo $! >"$pidf"
}

for name in "${processes[@]}"; do
  upper="$(echo "$name" | tr a-z A-Z)"
  port_var="SB_${upper}_HTTP_PORT"
  url_var="SB_RABBITMQ_${upper}_URL"  # amqp://sb-<name>:...@ (from .run/servers/env)
  extra=()
  if [[ "$name" == identity ]]; then extra=(SB_IDENTITY_BOOTSTRAP_USERNAME=admin); fi
  start_process "$name" SB_HTTP_PORT="${!port_var}" SB_HTTP_HOST=127.0.0.1 \
    SB_RABBITMQ_URL="${!url_var}" "${extra[@]}"
done

# Wait until every process answers /ready (deadline 30 s each).
wait_ready() { # name url
  local deadline=$((SECONDS + 30))
  until curl -fsS -o /dev/null "$2/ready" 2>/dev/null; do
    if ! alive "$run/pids/$1.pid"; then
      echo "run: $1 exited; see $run/log/$1.log" >&2; tail -n 5 "$run/log/$1.log" >&2; exit 1
    fi
    if ((SECONDS >= deadline)); then
      echo "run: $1 not ready after 30 s:" >&2; curl -sS "$2/ready" >&2 || true; exit 1
    fi
    sleep 0.1
  done
}
for name in "${processes[@]}"; do
  var="SB_$(echo "$name" | tr a-z A-Z)_HTTP_PORT"
  wait_ready "$name" "http://127.0.0.1:${!var}"
done
edge_url="http://127.0.0.1:$SB_EDGE_HTTP_PORT"
# A development token (12 h, super admin of tenant "dev"), signed with the key above.
token="$(SB_CONFIG= "$root/build/release/services/edge/sb-edge" token --sub dev --tenant dev \
  --roles super_admin --ttl 43200)"
identity_lines=""
if [[ " ${processes[*]} " == *" identity "* ]]; then
  # Ready is not yet usable: wait until the edge routes to identity and the
  # bootstrap admin is stored, so the login printed below works at once.
  deadline=$((SECONDS + 30))
  until curl -fsS -H "Authorization: Bearer $token" "$edge_url/api/v1/services" 2>/dev/null |
        grep -q '"name":"identity","versions":\[{' &&
        curl -fsS -H "Authorization: Bearer $token" \
          "$edge_url/api/v1/events?type=identity.user.registered&tenant=_platform" 2>/dev/null |
        grep -Eq '"username": ?"admin"'; do
    if ((SECONDS >= deadline)); then
      echo "run: the edge does not route to identity, or the admin was not created, after 30 s;" \
        "see $run/log/identity.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  identity_lines="  Identity (admin):     http://127.0.0.1:$SB_IDENTITY_HTTP_PORT   (/health, /ready, /metrics)
  Admin login:          tenant _platform, user admin, password $SB_IDENTITY_BOOTSTRAP_PASSWORD
                        (POST $edge_url/api/identity/login; kept in .run/platform.env)
"
fi

cat <<EOF

Switchboard is running (${processes[*]}).
  Edge:                 $edge_url   (/health, /ready; /api/v1/services, /api/v1/catalog,
                        /openapi.json, /metrics and everything else need the token)
  Dev token (12 h):     $token
                        e.g. curl -H "Authorization: Bearer <token>" $edge_url/api/v1/services
  Store (admin):        http://127.0.0.1:$SB_STORE_HTTP_PORT   (/health, /ready, /metrics)
  Registry (admin):     http://127.0.0.1:$SB_REGISTRY_HTTP_PORT   (/health, /ready, /metrics)
$identity_lines  RabbitMQ management:  $SB_RABBITMQ_MGMT_URL   (user sb, password in .run/servers/secrets)
  RabbitMQ users:       one per process (sb-store, sb-registry, sb-edge, sb-identity; §11.6 of docs/protocol.md)
  RabbitMQ AMQP:        amqp://sb:***@127.0.0.1:$(grep '^RABBITMQ_PORT' "$run/servers/ports" | cut -d= -f2)/   (full URLs in .run/servers/env)
  PostgreSQL:           127.0.0.1:$(grep POSTGRES_PORT "$run/servers/ports" | cut -d= -f2), database switchboard, user sb
  Redis:                127.0.0.1:$(grep REDIS_PORT "$run/servers/ports" | cut -d= -f2)
  Logs:                 $run/log/
  Data:                 $run/servers/
Stop everything:        scripts/stop.sh
EOF
