#!/usr/bin/env bash
# CPU cost per alert of each component while one processor drains a preloaded queue:
# robust to other load on the machine, unlike a wall-clock rate.
#   loadtest/cpu-per-alert.sh [seconds of preload]   (release binaries must be built)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-8}
queue=bench.cpu.$$
prefix="bench.cpu.$$:"
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime, in clock ticks
redis_cpu() { redis-cli info cpu | awk -F: '/used_cpu_(sys|user):/ {s += $2} END {printf "%.2f", s}'; }
hz=$(getconf CLK_TCK)

AMQP_QUEUE=$queue LISTEN_ADDR=127.0.0.1:14200 RUST_LOG=warn ./target/release/alert-listener >/dev/null 2>&1 &
listener=$!
trap 'kill $listener $processor 2>/dev/null || true' EXIT
processor=""
until curl -sf 127.0.0.1:14200/readyz >/dev/null; do sleep 0.2; done
BATCH=100 wrk -t1 -c8 -d"${seconds}s" -s loadtest/wrk/batch.lua http://127.0.0.1:14200 >/dev/null
kill $listener
sleep 6 # queue stats settle
total=$(rabbitmqctl -q list_queues name messages | awk -v q="$queue" '$1==q {print $2}')

beam=$(pgrep -f beam.smp | head -1)
redis_before=$(redis_cpu); beam_before=$(cpu_of "$beam"); start=$(date +%s.%N)
AMQP_QUEUE=$queue REDIS_PREFIX=$prefix LISTEN_ADDR=127.0.0.1:14201 RUST_LOG=warn ./target/release/alert-processor >/dev/null 2>&1 &
processor=$!
while :; do
  sleep 0.5
  n=$(curl -s 127.0.0.1:14201/metrics | awk '/^alerts_processor_messages_total/ {s+=$2} END {print s+0}')
  [ "$n" -ge "$total" ] && break
done
end=$(date +%s.%N)
proc_ticks=$(cpu_of "$processor"); redis_after=$(redis_cpu); beam_after=$(cpu_of "$beam")
kill $processor
echo "alerts: $total in $(echo "$end - $start" | bc) s"
echo "processor: $(echo "scale=1; $proc_ticks / $hz * 1000000 / $total" | bc) us CPU per alert"
echo "redis:     $(echo "scale=1; ($redis_after - $redis_before) * 1000000 / $total" | bc) us CPU per alert"
echo "rabbitmq:  $(echo "scale=1; ($beam_after - $beam_before) / $hz * 1000000 / $total" | bc) us CPU per alert (delivery + ack)"
rabbitmqctl -q delete_queue "$queue" >/dev/null; rabbitmqctl -q delete_queue "$queue.dead" >/dev/null
redis-cli --scan --pattern "$prefix*" | xargs -r redis-cli del >/dev/null
