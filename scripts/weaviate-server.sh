#!/usr/bin/env bash
# A local Weaviate server for tests and for users without Docker, built from source with Go.
#
#   scripts/weaviate-server.sh start [--data DIR] [--port N] [--grpc-port N] [--name NAME]
#   scripts/weaviate-server.sh stop    [--name NAME]
#   scripts/weaviate-server.sh status  [--name NAME]
#   scripts/weaviate-server.sh env     [--name NAME]   # shell lines: DYNAGRAPH_TEST_WEAVIATE_URL=...
#   scripts/weaviate-server.sh config  [--name NAME]   # path of a configs/weaviate.yaml pointed at it
#   scripts/weaviate-server.sh install                 # only build/reuse the binary, print its path
#
# start: installs the pinned server (`go install github.com/weaviate/weaviate/cmd/weaviate-server@$VERSION`)
# into ~/.cache/dynagraph/weaviate/$VERSION/ when missing, starts it on free 127.0.0.1 ports (REST,
# gRPC, and the cluster's gossip, data and Raft ports, so several servers coexist), anonymous
# access, no vectorizer module, waits for /v1/.well-known/ready and prints the REST URL on stdout.
# Without --data the data lives in a new temporary folder, removed by stop; with --data DIR it is
# kept and a later `start --data DIR` serves the same data again (on the same ports when they are
# free: Raft remembers its address).
#
# Environment: DYNAGRAPH_WEAVIATE_VERSION (default below), DYNAGRAPH_WEAVIATE_CACHE (default
# ~/.cache/dynagraph/weaviate), DYNAGRAPH_WEAVIATE_STATE (pid/log folder, default
# ${TMPDIR:-/tmp}/dynagraph-weaviate-$UID), DYNAGRAPH_WEAVIATE_START_TIMEOUT (seconds, default 120).
#
# Note: Weaviate binds REST and the cluster ports to 127.0.0.1 here, but its gRPC listener binds
# every interface (the server has no option for its address); access is anonymous, so run it on a
# machine whose network you trust, or behind a firewall, as for the docker-compose file.
set -euo pipefail

VERSION="${DYNAGRAPH_WEAVIATE_VERSION:-v1.35.2}"
CACHE="${DYNAGRAPH_WEAVIATE_CACHE:-$HOME/.cache/dynagraph/weaviate}"
STATE_ROOT="${DYNAGRAPH_WEAVIATE_STATE:-${TMPDIR:-/tmp}/dynagraph-weaviate-$(id -u)}"
START_TIMEOUT="${DYNAGRAPH_WEAVIATE_START_TIMEOUT:-120}"
BIN="$CACHE/$VERSION/weaviate-server"

die() { echo "weaviate-server: $*" >&2; exit 1; }
say() { echo "weaviate-server: $*" >&2; }

cmd="${1:-}"; [ $# -gt 0 ] && shift
NAME=default DATA="" PORT="" GRPC_PORT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --grpc-port) GRPC_PORT="$2"; shift 2 ;;
    --name) NAME="$2"; shift 2 ;;
    *) die "unknown option $1 (see the top of $0)" ;;
  esac
done
[[ "$NAME" =~ ^[A-Za-z0-9_.-]+$ ]] || die "--name: letters, digits, . _ - only"
STATE="$STATE_ROOT/$NAME"
PIDFILE="$STATE/pid"
INFO="$STATE/server.env"

alive() {  # a live process (a zombie nobody reaps counts as ended)
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
  ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

running_pid() {  # the server's pid if it is alive and still our binary, else nothing
  [ -f "$PIDFILE" ] || return 1
  local pid; pid="$(cat "$PIDFILE")"
  alive "$pid" || return 1
  case "$(readlink "/proc/$pid/exe" 2>/dev/null || echo weaviate-server)" in
    *weaviate-server*) echo "$pid" ;;
    *) return 1 ;;
  esac
}

install_server() {
  if [ -x "$BIN" ]; then echo "$BIN"; return; fi
  command -v go >/dev/null 2>&1 || die "no Weaviate server at $BIN and no \`go\` to build it (install Go >= 1.24, or use docker compose up -d)"
  mkdir -p "$CACHE/$VERSION"
  say "building Weaviate $VERSION with go install (a few minutes, once) into $CACHE/$VERSION"
  local t0=$SECONDS
  GOBIN="$CACHE/$VERSION" GOFLAGS="${GOFLAGS:--buildvcs=false}" \
    go install "github.com/weaviate/weaviate/cmd/weaviate-server@$VERSION" >&2 \
    || die "go install github.com/weaviate/weaviate/cmd/weaviate-server@$VERSION failed (see above)"
  say "built in $((SECONDS - t0)) s: $BIN"
  echo "$BIN"
}

free_ports() {  # N distinct free loopback ports, held together while chosen
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()
PY
}

port_free() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go listens: TIME_WAIT is free
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

start() {
  if pid="$(running_pid)"; then
    # shellcheck disable=SC1090
    . "$INFO"; say "already running (pid $pid)"; echo "$WEAVIATE_URL"; return
  fi
  local bin; bin="$(install_server)"
  mkdir -p "$STATE"
  local temp_data=0
  if [ -z "$DATA" ]; then DATA="$(mktemp -d "${TMPDIR:-/tmp}/dynagraph-weaviate-data.XXXXXX")"; temp_data=1; fi
  mkdir -p "$DATA"; DATA="$(cd "$DATA" && pwd)"
  # A data folder remembers its ports (Raft keeps its own address): reuse them when free.
  local rest grpc gossip data_port raft raft_rpc
  read -r rest grpc gossip data_port raft raft_rpc <<<"$(free_ports 6)"
  if [ -f "$DATA/.dynagraph-ports" ]; then
    local saved; saved="$(cat "$DATA/.dynagraph-ports")"
    local ok=1; for p in $saved; do port_free "$p" || ok=0; done
    if [ $ok = 1 ]; then read -r rest grpc gossip data_port raft raft_rpc <<<"$saved"
    else say "the ports this data folder used are taken; starting on new ones"; fi
  fi
  [ -n "$PORT" ] && rest="$PORT"
  [ -n "$GRPC_PORT" ] && grpc="$GRPC_PORT"
  echo "$rest $grpc $gossip $data_port $raft $raft_rpc" >"$DATA/.dynagraph-ports"
  local log="$STATE/server.log"
  (
    cd "$DATA"
    exec env -i PATH="$PATH" HOME="$HOME" TMPDIR="${TMPDIR:-/tmp}" \
      PERSISTENCE_DATA_PATH="$DATA" \
      AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED=true \
      DEFAULT_VECTORIZER_MODULE=none ENABLE_MODULES="" \
      CLUSTER_HOSTNAME=dynagraph-node1 \
      CLUSTER_BIND_ADDR=127.0.0.1 CLUSTER_ADVERTISE_ADDR=127.0.0.1 \
      CLUSTER_GOSSIP_BIND_PORT="$gossip" CLUSTER_DATA_BIND_PORT="$data_port" \
      RAFT_PORT="$raft" RAFT_INTERNAL_RPC_PORT="$raft_rpc" RAFT_BOOTSTRAP_EXPECT=1 \
      RAFT_JOIN="dynagraph-node1:$raft" \
      RAFT_ENABLE_ONE_NODE_RECOVERY=true \
      GRPC_PORT="$grpc" GO_PROFILING_DISABLE=true DISABLE_TELEMETRY=true \
      QUERY_DEFAULTS_LIMIT=25 LIMIT_RESOURCES=true LOG_LEVEL="${WEAVIATE_LOG_LEVEL:-warning}" \
      "$bin" --host 127.0.0.1 --port "$rest" --scheme http
  ) >"$log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$PIDFILE"
  local url="http://127.0.0.1:$rest"
  cat >"$INFO" <<EOF
WEAVIATE_PID=$pid
WEAVIATE_URL=$url
WEAVIATE_HOST=127.0.0.1
WEAVIATE_HTTP_PORT=$rest
WEAVIATE_GRPC_PORT=$grpc
WEAVIATE_DATA=$DATA
WEAVIATE_TEMP_DATA=$temp_data
WEAVIATE_VERSION=$VERSION
WEAVIATE_LOG=$log
EOF
  local deadline=$((SECONDS + START_TIMEOUT))
  until python3 -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
      "$url/v1/.well-known/ready" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$log" >&2; rm -f "$PIDFILE"; die "the server exited while starting (log: $log)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 20 "$log" >&2; stop_server; die "not ready after ${START_TIMEOUT}s (log: $log)"
    fi
    sleep 0.3
  done
  write_config
  say "Weaviate $VERSION ready: REST $url, gRPC 127.0.0.1:$grpc, pid $pid, data $DATA"
  say "config: $STATE/weaviate.yaml (configs/weaviate.yaml pointed here); stop: $0 stop${NAME:+ --name $NAME}"
  echo "$url"
}

write_config() {
  # shellcheck disable=SC1090
  . "$INFO"
  local repo; repo="$(cd "$(dirname "$0")/.." && pwd)"
  sed -e "s/^\(    host:\).*/\1 127.0.0.1/" \
      -e "s/^\(    http_port:\).*/\1 $WEAVIATE_HTTP_PORT/" \
      -e "s/^\(    grpc_port:\).*/\1 $WEAVIATE_GRPC_PORT/" \
      "$repo/configs/weaviate.yaml" >"$STATE/weaviate.yaml"
}

stop_server() {
  local pid
  if ! pid="$(running_pid)"; then say "not running"; rm -f "$PIDFILE"; return 0; fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then
    say "pid $pid ignored SIGTERM for 20 s; SIGKILL"; kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
  fi
  rm -f "$PIDFILE"
  # shellcheck disable=SC1090
  . "$INFO"
  if [ "${WEAVIATE_TEMP_DATA:-0}" = 1 ] && [ -n "${WEAVIATE_DATA:-}" ]; then rm -rf "$WEAVIATE_DATA"; fi
  say "stopped (pid $pid)"
}

case "$cmd" in
  start) start ;;
  stop) stop_server ;;
  status)
    if pid="$(running_pid)"; then
      # shellcheck disable=SC1090
      . "$INFO"; echo "running: pid $pid, $WEAVIATE_URL (grpc $WEAVIATE_GRPC_PORT), Weaviate $WEAVIATE_VERSION, data $WEAVIATE_DATA"
    else echo "stopped"; exit 3; fi ;;
  env)
    running_pid >/dev/null || die "not running (start it first)"
    # shellcheck disable=SC1090
    . "$INFO"
    echo "DYNAGRAPH_TEST_WEAVIATE_URL=$WEAVIATE_URL"
    echo "DYNAGRAPH_TEST_WEAVIATE_GRPC_PORT=$WEAVIATE_GRPC_PORT" ;;
  config) running_pid >/dev/null || die "not running (start it first)"; echo "$STATE/weaviate.yaml" ;;
  install) install_server ;;
  *) die "usage: $0 start|stop|status|env|config|install [--data DIR] [--port N] [--grpc-port N] [--name NAME]" ;;
esac
