#!/usr/bin/env bash
# Starts the distributed services (release builds) on free loopback ports with a
# unique queue and Redis prefix, runs a bounded standard scenario set with
# alert-loadtest and adds its rows to the table in loadtest/RESULTS.md.
#
#   loadtest/run-scenarios.sh                 # standard set, a few minutes
#   SCENARIOS="e2e idle" loadtest/run-scenarios.sh
#   BIG=1 loadtest/run-scenarios.sh           # adds 100k clients over 6 notify processes
#   SCENARIOS=wire loadtest/run-scenarios.sh  # the raw-socket floor of this machine
#   SCENARIOS=auth loadtest/run-scenarios.sh  # handshakes/s and memory, CLIENT_AUTH none vs jwt
#   SCENARIOS=flood loadtest/run-scenarios.sh # others' latency while one address floods
#
# Needs: cargo build --release -p alert-listener -p alert-processor -p alert-notify -p alert-loadtest,
# RabbitMQ and Redis on 127.0.0.1 (scripts/services), jq, curl.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release}  # another build's binaries, to compare two versions in one run
OUT=loadtest/results
RESULTS=loadtest/RESULTS.md
SCENARIOS=${SCENARIOS:-"wire e2e throughput idle close-lag ingest"}  # ingest last: its backlog floods clients
[[ "${BIG:-0}" == 1 ]] && SCENARIOS="$SCENARIOS big"
NOTIFY_PROCS=${NOTIFY_PROCS:-1}
[[ "$SCENARIOS" == *big* ]] && NOTIFY_PROCS=6  # 16,667 clients each, under the 20,000-file limit
SUFFIX="lt$$"
export AMQP_QUEUE="loadtest.$SUFFIX" REDIS_PREFIX="$SUFFIX:" RUST_LOG=warn
# Every load-generator client is 127.0.0.1: notify's per-address limits are raised out of
# the way, not turned off, so that what they cost per connection is measured.
export MAX_CONNECTIONS_PER_ADDRESS=1000000 MAX_STREAMS_PER_ADDRESS=1000000 HANDSHAKES_PER_SECOND_PER_ADDRESS=1000000
mkdir -p "$OUT"

for b in alert-listener alert-processor alert-notify alert-loadtest; do
  [[ -x "$BIN/$b" ]] || { echo "missing $BIN/$b: build it with cargo build --release" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  redis-cli --scan --pattern "$REDIS_PREFIX*" | xargs -r -n 500 redis-cli del >/dev/null || true
  timeout 30 rabbitmqctl -q delete_queue "$AMQP_QUEUE" >/dev/null 2>&1 || true
  timeout 30 rabbitmqctl -q delete_queue "$AMQP_QUEUE.dead" >/dev/null 2>&1 || true
}
trap cleanup EXIT

wait_ready() { # url
  for _ in $(seq 1 150); do curl -fs "$1/readyz" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "not ready: $1" >&2; return 1
}

LISTENER_PORT=$(free_port)
LISTEN_ADDR=127.0.0.1:$LISTENER_PORT "$BIN/alert-listener" 2>"$OUT/listener.log" & PIDS+=($!)
LISTENER="http://127.0.0.1:$LISTENER_PORT"
LISTEN_ADDR=127.0.0.1:$(free_port) "$BIN/alert-processor" 2>"$OUT/processor.log" & PIDS+=($!)
NOTIFY=() NOTIFY_PIDS=()
for _ in $(seq 1 "$NOTIFY_PROCS"); do
  port=$(free_port)
  LISTEN_ADDR=127.0.0.1:$port "$BIN/alert-notify" 2>>"$OUT/notify.log" & PIDS+=($!); NOTIFY_PIDS+=($!)
  NOTIFY+=("127.0.0.1:$port")
done
# A notify process only the idle scenario uses, so its memory is not left over from others.
IDLE_PORT=$(free_port)
LISTEN_ADDR=127.0.0.1:$IDLE_PORT "$BIN/alert-notify" 2>>"$OUT/notify-idle.log" & PIDS+=($!); IDLE_PID=$!
wait_ready "$LISTENER"
for n in "${NOTIFY[@]}" "127.0.0.1:$IDLE_PORT"; do wait_ready "http://$n"; done
NOTIFY1=${NOTIFY[0]}
ALL_NOTIFY=$(IFS=,; echo "${NOTIFY[*]}")
echo "listener $LISTENER, notify ${NOTIFY[*]} (pids ${NOTIFY_PIDS[*]}), queue $AMQP_QUEUE, prefix $REDIS_PREFIX"

LT=(nice -n 5 "$BIN/alert-loadtest")
ROWS=()
STAMP=$(date -u +'%F %H:%MZ')
row() { ROWS+=("| $STAMP: $1 | \`$2\` | $3 |"); echo "== $1: $3"; }

for scenario in $SCENARIOS; do
  case $scenario in
  ingest)
    cmd="alert-loadtest ingest --rate 1000 --connections 8 --duration 10"
    timeout 60 "${LT[@]}" ingest --listener "$LISTENER" --rate 1000 --connections 8 --duration 10 --out "$OUT/ingest" >/dev/null
    row "ingest, 1,000 POST/s, 8 connections, 10 s" "$cmd" "$(jq -r '.posts | "\(.accepted_alerts_per_second|floor) accepted/s, statuses \(.statuses|tojson), POST p50 \(.latency.p50_ms) ms, p99 \(.latency.p99_ms) ms, max \(.latency.max_ms) ms"' "$OUT/ingest.json")"
    ;;
  e2e)
    cmd="alert-loadtest e2e --clients 1000 --rate 20 --broadcasts 400"
    timeout 120 "${LT[@]}" e2e --listener "$LISTENER" --notify "$NOTIFY1" --clients 1000 --rate 20 --broadcasts 400 --out "$OUT/e2e" >/dev/null
    row "e2e, 1,000 clients, 20 alerts/s, 20 s" "$cmd" "$(jq -r '"delivered \(.delivered)/\(.expected), missing \(.missing), dup \(.duplicates); POST->client p50 \(.latency.p50_ms) ms, p90 \(.latency.p90_ms), p99 \(.latency.p99_ms), p99.9 \(.latency.p999_ms), max \(.latency.max_ms); last client per broadcast p99 \(.last_client_per_broadcast.p99_ms) ms"' "$OUT/e2e.json")"
    ;;
  throughput)
    cmd="alert-loadtest fanout --clients 10000 --rate 50 --broadcasts 500"
    timeout 180 "${LT[@]}" fanout --listener "$LISTENER" --notify "$NOTIFY1" --clients 10000 --rate 50 --broadcasts 500 --out "$OUT/throughput" >/dev/null
    row "fan-out, 10,000 clients, 50 alerts/s, 10 s" "$cmd" "$(jq -r '"delivered \(.delivered)/\(.expected), missing \(.missing), dup \(.duplicates); \(.deliveries_per_second_peak) deliveries/s peak, \(.deliveries_per_second_mean_active|floor) mean; p50 \(.latency.p50_ms) ms, p99 \(.latency.p99_ms), max \(.latency.max_ms)"' "$OUT/throughput.json")"
    ;;
  idle)
    cmd="alert-loadtest idle --clients 19900 --hold 30 --server-pid <notify>"
    timeout 240 "${LT[@]}" idle --notify "127.0.0.1:$IDLE_PORT" --clients 19900 --hold 30 --server-pid "$IDLE_PID" --out "$OUT/idle" >/dev/null
    row "idle, 19,900 connections on one notify, 30 s" "$cmd" "$(jq -r '"\(.ready_clients) held, \(.still_connected_after_hold) after hold; server \((.server_bytes_per_connection // 0)/1024*10|floor/10) KiB/connection, idle CPU \((.server_cpu_percent_of_one_core // 0)*10|floor/10) % of a core; client \((.client_bytes_per_connection // 0)/1024*10|floor/10) KiB/connection"' "$OUT/idle.json")"
    ;;
  auth)
    # What verifying a token costs: two fresh notify processes, CLIENT_AUTH=none and
    # jwt (HS256), the same 19,900 clients against each in turn; the jwt clients
    # present one token in their handshake auth.
    secret=loadtest-jwt-secret-0123456789abcdef
    token=$(python3 - "$secret" <<'PYEOF'
import base64, hashlib, hmac, json, sys, time
b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=")
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": "loadtest", "exp": int(time.time()) + 3600}).encode())
mac = b64(hmac.new(sys.argv[1].encode(), head + b"." + body, hashlib.sha256).digest())
print((head + b"." + body + b"." + mac).decode())
PYEOF
)
    summary=""
    for mode in none jwt; do
      port=$(free_port)
      CLIENT_AUTH=$mode JWT_SECRET=$secret LISTEN_ADDR=127.0.0.1:$port "$BIN/alert-notify" 2>>"$OUT/notify-$mode.log" & PIDS+=($!); pid=$!
      wait_ready "http://127.0.0.1:$port"
      args=(idle --notify "127.0.0.1:$port" --clients 19900 --hold 10 --server-pid "$pid" --out "$OUT/auth-$mode")
      [[ $mode == jwt ]] && args+=(--token "$token")
      timeout 240 "${LT[@]}" "${args[@]}" >/dev/null
      kill "$pid" 2>/dev/null || true
      summary+="$mode: $(jq -r '"\(.ready_clients) held, \(.clients.connect_seconds*10|floor/10) s to connect (\(.ready_clients/.clients.connect_seconds|floor) handshakes/s), server \((.server_bytes_per_connection // 0)/1024*10|floor/10) KiB/connection"' "$OUT/auth-$mode.json"); "
    done
    cmd="alert-loadtest idle --clients 19900 --hold 10 [--token <HS256 JWT>], notify with CLIENT_AUTH=none then jwt"
    row "client auth, 19,900 connections, none vs jwt" "$cmd" "${summary%; }"
    ;;
  flood)
    # One address floods a notify that has the default per-address limits while 1,000
    # clients from eight other addresses take 20 alerts/s: their latency with and
    # without the flood, and what the flooding address got.
    port=$(free_port)
    # FLOOD_SESSIONS: the sessions one address may hold (default: notify's 5,000).
    env -u MAX_STREAMS_PER_ADDRESS -u HANDSHAKES_PER_SECOND_PER_ADDRESS \
      MAX_CONNECTIONS_PER_ADDRESS="${FLOOD_SESSIONS:-5000}" \
      LISTEN_ADDR=127.0.0.1:$port "$BIN/alert-notify" 2>>"$OUT/notify-flood.log" & PIDS+=($!)
    wait_ready "http://127.0.0.1:$port"
    e2e=(e2e --listener "$LISTENER" --notify "127.0.0.1:$port" --clients 1000 --rate 20 --broadcasts 400 --source-addrs 100)
    timeout 120 "${LT[@]}" "${e2e[@]}" --out "$OUT/flood-quiet" >/dev/null
    timeout 120 "${LT[@]}" idle --notify "127.0.0.1:$port" --clients 15000 --source-addrs 1 --first-source 200 \
      --hold 60 --connect-timeout 40 --out "$OUT/flood-attacker" >"$OUT/flood-attacker.log" 2>&1 & flooder=$!
    sleep 2
    timeout 120 "${LT[@]}" "${e2e[@]}" --out "$OUT/flood-e2e" >/dev/null
    refused=$(curl -fs "http://127.0.0.1:$port/metrics" | awk '/^alerts_notify_limited_total/ { n += $2 } END { print n + 0 }')
    wait "$flooder" || true
    latency='"p50 \(.latency.p50_ms) ms, p99 \(.latency.p99_ms) ms, delivered \(.delivered)/\(.expected)"'
    cmd="alert-loadtest e2e --clients 1000 --rate 20, then again while alert-loadtest idle --clients 15000 --source-addrs 1 floods"
    row "one address flooding, 1,000 clients elsewhere" "$cmd" "quiet: $(jq -r "$latency" "$OUT/flood-quiet.json"); flooded: $(jq -r "$latency" "$OUT/flood-e2e.json"); the flooding address held $(jq -r '.ready_clients' "$OUT/flood-attacker.json") sessions, $refused requests refused"
    ;;
  close-lag)
    cmd="alert-loadtest close-lag --clients 10 --count 300 --rate 50"
    timeout 120 "${LT[@]}" close-lag --listener "$LISTENER" --notify "$NOTIFY1" --clients 10 --count 300 --rate 50 --out "$OUT/close-lag" >/dev/null
    row "close lag, 300 alerts of 1-3 s, 10 clients" "$cmd" "$(jq -r '"closes \(.closes_received)/\(.expected_closes), missing \(.missing), dup \(.duplicates); lag p50 \(.close_lag.p50_ms) ms, p99 \(.close_lag.p99_ms), max \(.close_lag.max_ms)"' "$OUT/close-lag.json")"
    ;;
  wire)
    cmd="alert-loadtest wire --clients 1000 --rate 20 --broadcasts 400"
    timeout 120 "${LT[@]}" wire --clients 1000 --rate 20 --broadcasts 400 --out "$OUT/wire" >/dev/null 2>&1
    row "wire floor (raw sockets, no framework), 1,000 clients, 20 broadcasts/s" "$cmd" "$(jq -r '"delivered \(.delivered)/\(.expected); p50 \(.latency.p50_ms) ms, p99 \(.latency.p99_ms), max \(.latency.max_ms); CPU per delivery: server \(.cpu.server_us_per_delivery) µs, client \(.cpu.client_us_per_delivery) µs"' "$OUT/wire.json")"
    cmd="alert-loadtest wire --clients 5000 --rate 400 --broadcasts 1000"
    timeout 180 "${LT[@]}" wire --clients 5000 --rate 400 --broadcasts 1000 --out "$OUT/wire-max" >/dev/null 2>&1
    row "wire floor, 5,000 clients, 400 broadcasts/s (2 M deliveries/s offered)" "$cmd" "$(jq -r '"delivered \(.delivered)/\(.expected); \(.deliveries_per_second_peak) deliveries/s peak, \(.deliveries_per_second_mean_active|floor) mean; CPU per delivery: server \(.cpu.server_us_per_delivery) µs, client \(.cpu.client_us_per_delivery) µs"' "$OUT/wire-max.json")"
    ;;
  big)
    # 100,000 clients: 6 receiver processes (<= 20k files each) over 6 notify processes.
    # One broadcast every 2 s, so each is measured on its own, not behind the previous one.
    run=$((RANDOM * 1000 + $$ % 1000)); recv=(); ready=()
    rm -f "$OUT"/big-ready-*
    for i in 0 1 2 3 4 5; do
      n=16667; [[ $i == 5 ]] && n=16665
      timeout 300 "${LT[@]}" fanout --no-post --run-id "$run" --broadcasts 10 --wait 200 --notify "$ALL_NOTIFY" \
        --clients $n --source-addrs 4 --first-source $((1 + i * 4)) --threads 1 \
        --ready-file "$OUT/big-ready-$i" --out "$OUT/big-$i" >/dev/null 2>"$OUT/big-$i.log" &
      recv+=($!); ready+=("$OUT/big-ready-$i")
    done
    wait_list=$(IFS=,; echo "${ready[*]}")
    timeout 300 "${LT[@]}" fanout --run-id "$run" --broadcasts 10 --rate 0.5 --clients 1 --notify "$NOTIFY1" \
      --listener "$LISTENER" --wait-for "$wait_list" --connect-timeout 240 --out "$OUT/big-post" >/dev/null
    for p in "${recv[@]}"; do wait "$p" || true; done
    $BIN/alert-loadtest merge "$OUT"/big-[0-5].json --out "$OUT/big" >/dev/null
    cmd="6 x alert-loadtest fanout --no-post (16,667 clients each) + 1 poster at 0.5/s; alert-loadtest merge"
    row "100,000 clients on 6 notify processes, 10 broadcasts 2 s apart" "$cmd" "$(jq -r '"delivered \(.delivered)/\(.expected), missing \(.missing), dup \(.duplicates); last client per broadcast p50 \(.last_client_per_broadcast.p50_ms) ms, max \(.last_client_per_broadcast.max_ms); p50 \(.latency.p50_ms) ms, p99 \(.latency.p99_ms) ms"' "$OUT/big.json")"
    ;;
  *) echo "unknown scenario $scenario" >&2 ;;
  esac
done

printf '%s\n' "${ROWS[@]}" > "$OUT/rows.md"
# Add this run's rows at the end of the table in RESULTS.md; earlier rows and the
# hand-written notes around the table stay.
if [[ -f "$RESULTS" ]] && grep -q 'scenarios:end' "$RESULTS"; then
  awk -v rows="$OUT/rows.md" '
    /scenarios:end/ { while ((getline line < rows) > 0) print line }
    { print }' "$RESULTS" > "$RESULTS.tmp" && mv "$RESULTS.tmp" "$RESULTS"
else
  {
    echo "# alert-loadtest results"; echo
    echo "<!-- scenarios:begin -->"
    echo "| scenario | command | result |"; echo "|---|---|---|"
    cat "$OUT/rows.md"
    echo "<!-- scenarios:end -->"
  } > "$RESULTS"
fi
echo "wrote $RESULTS"
