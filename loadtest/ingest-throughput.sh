#!/usr/bin/env bash
# Distributed ingest, then processing, throughput: the release listener takes
# RATE POSTs/s of BATCH alerts over CONNS connections for 10 s (no processor running), then
# a processor drains the queue. Prints accepted/s, POST latency, CPU ticks (1/100 s) of
# listener, RabbitMQ and Redis, and how long the drain took. Needs cargo build --release
# -p alert-listener -p alert-processor -p alert-loadtest, and scripts/services.
#   RATE=1000 BATCH=100 CONNS=8 loadtest/ingest-throughput.sh
#   BIN=/path/to/other/release RATE=1000 BATCH=100 CONNS=8 loadtest/ingest-throughput.sh
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}  # another build's binaries, to compare two versions
S=ib$$; export AMQP_QUEUE="loadtest.$S" REDIS_PREFIX="$S:" RUST_LOG=warn
LISTEN_ADDR=127.0.0.1:14300 $BIN/alert-listener 2>/tmp/ib-listener.log & LP=$!
trap 'kill $LP ${PP:-} 2>/dev/null' EXIT
sleep 1.5
RMQ=$(pgrep -f beam.smp | head -1); RED=$(pgrep -x redis-server | head -1)
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
l0=$(ticks $LP); r0=$(ticks $RMQ)
$BIN/alert-loadtest ingest --listener http://127.0.0.1:14300 --rate ${RATE:-1000} --batch ${BATCH:-100} --connections ${CONNS:-8} --duration 10 --out /tmp/ib > /dev/null 2>&1 || { echo 'loadtest failed' >&2; }
l1=$(ticks $LP); r1=$(ticks $RMQ)
python3 -c "
import json; r=json.load(open('/tmp/ib.json'))['posts']
print('ingest accepted/s', round(r['accepted_alerts_per_second']), 'statuses', r['statuses'], 'p50', r['latency']['p50_ms'], 'p99', r['latency']['p99_ms'])"
acc=$(curl -s 127.0.0.1:14300/metrics | awk '/^alerts_listener_alerts_accepted_total/ {print $2}')
echo "accepted $acc; listener cpu $((l1-l0)) ticks, rabbitmq $((r1-r0)) ticks"
# Now drain with the processor.
t0=$(date +%s.%N); p_r0=$(ticks $RMQ); d0=$(ticks $RED)
LISTEN_ADDR=127.0.0.1:14301 $BIN/alert-processor 2>/tmp/ib-processor.log & PP=$!
for i in $(seq 1 600); do
  n=$(rabbitmqctl -q list_queues name messages 2>/dev/null | awk -v q="$AMQP_QUEUE" '$1==q {print $2}')
  [[ "$n" == "0" ]] && break; sleep 0.5
done
t1=$(date +%s.%N)
applied=$(curl -s 127.0.0.1:14301/metrics | awk '/^alerts_processor_messages_total\{outcome="applied"\}/ {print $2}')
echo "processor drained in $(echo "$t1 - $t0" | bc) s, applied $applied; processor cpu $(ticks $PP) ticks, rabbitmq $(( $(ticks $RMQ) - p_r0 )), redis $(( $(ticks $RED) - d0 ))"
kill $LP $PP; wait $LP $PP 2>/dev/null
redis-cli --scan --pattern "$REDIS_PREFIX*" | xargs -r -d '\n' -n 500 redis-cli del >/dev/null
timeout 30 rabbitmqctl -q delete_queue "$AMQP_QUEUE" >/dev/null 2>&1; timeout 30 rabbitmqctl -q delete_queue "$AMQP_QUEUE.dead" >/dev/null 2>&1
