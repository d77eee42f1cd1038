#!/usr/bin/env python3
"""Redis restart mid-stream, measured (issue 19, section 5; RELIABILITY.md).

Starts on loopback, with the release binaries: a private redis-server (AOF everysec) on
its own port, 1 listener, 2 processors, 2 notify and 20 Socket.IO clients
(alert-loadtest fanout --no-post), all with their own queue name and key prefix. POSTs
1,500 alerts over 30 s (one new location each, 3-6 s long), kills Redis -9 at +26 s and
starts it again at +28 s on the same data directory, then reports:

- when Redis answered again, and when the first event was written after that;
- overdue closes (windows whose end fell before Redis answered): lateness after their
  end (max/p99), how many closed more than 1 s late, and when the last went out after
  Redis answered;
- alerts applied after their end (no live event: by the rules no client saw them), and
  accepted alerts Redis has no trace of (lost with AOF everysec);
- each processor's /readyz during the outage, and its warnings about Redis;
- what the 20 clients received (opens delivered / missing / duplicate).

Bounded: about 75 s. Needs RabbitMQ on 127.0.0.1:5672 (scripts/services), redis-server,
and `cargo build --release -p alert-listener -p alert-processor -p alert-notify -p
alert-loadtest`. Usage:

    reliability/redis-restart.py [--bin target/release] [--json out.json]
"""

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone

ALERTS, SECONDS = 1500, 30.0
KILL_AT, RESTART_AT = 26.0, 28.0
CLIENTS = 20
GRACE = 10.0  # after the last POST: longest alert (6 s) plus slack for its close


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def now_ms():
    return time.time() * 1000.0


class Redis:
    """A minimal RESP client: enough for PING, XRANGE, LRANGE, KEYS."""

    def __init__(self, port, timeout=2.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def close(self):
        self.file.close()
        self.sock.close()

    def call(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self._read()

    def _read(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)[:-2]
            return data.decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError(f"unexpected reply {line!r}")


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
    parser.add_argument("--bin", default=os.path.join(target, "release"))
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--keep", action="store_true", help="keep the logs directory")
    args = parser.parse_args()
    for b in ("alert-listener", "alert-processor", "alert-notify", "alert-loadtest"):
        if not os.access(os.path.join(args.bin, b), os.X_OK):
            sys.exit(f"missing {args.bin}/{b}: cargo build --release -p {b}")

    work = tempfile.mkdtemp(prefix="redis-restart.")
    run = random.randrange(1, 2**31)
    queue = f"test.reliability.{run}"  # RabbitMQ expires idle test.* queues
    prefix = f"rel{run}:"
    redis_port = free_port()
    redis_dir = os.path.join(work, "redis")
    os.makedirs(redis_dir)
    procs = []  # (name, Popen): only what this script started, stopped by pid

    def start(name, argv, env=None):
        log = open(os.path.join(work, f"{name}.log"), "wb")
        p = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=log, stderr=log)
        procs.append((name, p))
        return p

    def start_redis():
        return start(
            "redis",
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
             "--dir", redis_dir, "--appendonly", "yes", "--appendfsync", "everysec",
             "--save", "", "--daemonize", "no", "--logfile", ""],
        )

    def wait_http(port, path="/readyz", timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                c.request("GET", path)
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"127.0.0.1:{port}{path} not ready after {timeout} s (logs in {work})")

    def wait_redis(timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                r = Redis(redis_port, timeout=0.5)
                ok = r.call("PING") == "PONG"
                r.close()
                if ok:
                    return now_ms()
            except (OSError, RuntimeError, ConnectionError):
                pass
            time.sleep(0.005)
        raise SystemExit("private Redis did not start")

    try:
        redis_proc = start_redis()
        wait_redis()
        redis_url = f"redis://127.0.0.1:{redis_port}"
        common = {"AMQP_QUEUE": queue, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix,
                  "LOG_FORMAT": "json"}  # RUST_LOG: the services' default unless set
        listener_port = free_port()
        start("listener", [os.path.join(args.bin, "alert-listener")],
              {**common, "LISTEN_ADDR": f"127.0.0.1:{listener_port}"})
        processor_ports = [free_port(), free_port()]
        for i, port in enumerate(processor_ports):
            start(f"processor{i + 1}", [os.path.join(args.bin, "alert-processor")],
                  {**common, "LISTEN_ADDR": f"127.0.0.1:{port}"})
        notify_ports = [free_port(), free_port()]
        for i, port in enumerate(notify_ports):
            start(f"notify{i + 1}", [os.path.join(args.bin, "alert-notify")],
                  {**common, "LISTEN_ADDR": f"127.0.0.1:{port}"})
        for port in [listener_port, *processor_ports, *notify_ports]:
            wait_http(port)

        ready_file = os.path.join(work, "clients.ready")
        clients = start(
            "clients",
            [os.path.join(args.bin, "alert-loadtest"), "--max-seconds", "120", "--out",
             os.path.join(work, "fanout"), "fanout", "--no-post", "--run-id", str(run),
             "--broadcasts", str(ALERTS), "--clients", str(CLIENTS), "--notify",
             ",".join(f"127.0.0.1:{p}" for p in notify_ports),
             "--wait", str(int(SECONDS + GRACE + 5)), "--ready-file", ready_file],
        )
        deadline = time.time() + 30
        while not os.path.exists(ready_file):
            if time.time() > deadline or clients.poll() is not None:
                raise SystemExit(f"clients did not connect (logs in {work})")
            time.sleep(0.05)

        # ---------------------------------------------------------- probes
        stop = threading.Event()
        readyz = {port: [] for port in processor_ports}  # (ms, status)
        pings = []  # (ms, ok)

        def probe_readyz(port):
            while not stop.is_set():
                t = now_ms()
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                    c.request("GET", "/readyz")
                    status = c.getresponse().status
                    c.close()
                except OSError:
                    status = 0
                readyz[port].append((t, status))
                time.sleep(0.05)

        def probe_redis():
            conn = None
            while not stop.is_set():
                t = now_ms()
                try:
                    if conn is None:
                        conn = Redis(redis_port, timeout=0.5)
                    ok = conn.call("PING") == "PONG"
                except (OSError, RuntimeError, ConnectionError):
                    ok = False
                    if conn is not None:
                        try:
                            conn.close()
                        except OSError:
                            pass
                    conn = None
                pings.append((t, ok))
                time.sleep(0.005)

        threads = [threading.Thread(target=probe_readyz, args=(p,), daemon=True)
                   for p in processor_ports]
        threads.append(threading.Thread(target=probe_redis, daemon=True))
        for t in threads:
            t.start()

        # ---------------------------------------------------------- load
        accepted = {}  # seq -> (accepted ms, duration s)
        statuses = {}
        lock = threading.Lock()
        t0 = time.time()
        interval = SECONDS / ALERTS

        def poster(worker, workers):
            conn = http.client.HTTPConnection("127.0.0.1", listener_port, timeout=10)
            for seq in range(worker, ALERTS, workers):
                due = t0 + seq * interval
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
                sent_us = int(time.time() * 1e6)
                duration = 3 + seq % 4
                body = json.dumps({
                    "location": f"lt-{run}-b{seq}",
                    "type": "Rocket Alert",
                    "timestamp": datetime.fromtimestamp(sent_us / 1e6, timezone.utc)
                    .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "durationSeconds": duration,
                    "title": f"lt:{run}:{seq}:{sent_us}",
                })
                try:
                    conn.request("POST", "/api/alerts", body, {"content-type": "application/json"})
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                except OSError:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", listener_port, timeout=10)
                    status = 0
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == 202:
                        accepted[seq] = (now_ms(), duration, sent_us / 1000.0)

        posters = [threading.Thread(target=poster, args=(w, 4), daemon=True) for w in range(4)]
        for t in posters:
            t.start()

        time.sleep(max(0.0, t0 + KILL_AT - time.time()))
        killed_at = now_ms()
        redis_proc.send_signal(signal.SIGKILL)
        redis_proc.wait()
        time.sleep(max(0.0, t0 + RESTART_AT - time.time()))
        restarted_at = now_ms()
        start_redis()
        for t in posters:
            t.join()
        time.sleep(GRACE)
        stop.set()
        for t in threads:
            t.join()
        clients.wait(timeout=60)

        # ---------------------------------------------------------- figures
        answered_at = next(t for t, ok in pings if ok and t >= restarted_at)
        r = Redis(redis_port, timeout=10)
        entries = r.call("XRANGE", prefix + "log", "-", "+")
        events = []
        for entry_id, fields in entries:
            record = json.loads(fields[fields.index("e") + 1])
            events.append({
                "ms": int(entry_id.split("-")[0]),
                "type": record["eventType"],
                "location": record["window"]["location"],
                "end": record["window"]["end"],
                "created": record["createdAt"],
            })
        after = [e for e in events if e["ms"] >= restarted_at]
        first_after = min(e["ms"] for e in after) if after else None
        closes = [e for e in events if e["type"] == "close"]
        # Windows that ended while Redis was away: their closes were due before it answered.
        overdue = [e for e in closes if killed_at <= e["end"] < answered_at]
        overdue_late = [e["created"] - e["end"] for e in overdue]
        late_closes = [e["created"] - e["end"] for e in closes]
        opened = {e["location"] for e in events if e["type"] == "open"}
        applied_after_end, lost = [], []
        for seq, (acc_ms, duration, start_ms) in sorted(accepted.items()):
            location = f"lt-{run}-b{seq}"
            if location in opened:
                continue
            history = r.call("LRANGE", prefix + "h:" + location, 0, -1) or []
            changes = [json.loads(h)["change"] for h in history]
            (applied_after_end if "expired" in changes else lost).append(
                {"seq": seq, "accepted": round((acc_ms - t0 * 1000) / 1000, 3),
                 "duration": duration})
        r.close()

        def readyz_in(port, since, until):
            return [s for t, s in readyz[port] if since <= t < until]

        processors = []
        for i, port in enumerate(processor_ports):
            during = readyz_in(port, killed_at, answered_at)
            first_503 = next((t for t, s in readyz[port] if t >= killed_at and s != 200), None)
            back_200 = next((t for t, s in readyz[port] if t >= answered_at and s == 200), None)
            warns, infos = 0, 0
            with open(os.path.join(work, f"processor{i + 1}.log"), errors="replace") as log:
                for line in log:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue
                    stamp = entry.pop("timestamp", "")  # LOG_FORMAT=json: flat fields
                    try:
                        at = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000
                    except ValueError:
                        continue
                    if at < killed_at:
                        continue
                    message = json.dumps(entry).lower()
                    if entry.get("level") in ("WARN", "ERROR"):
                        warns += 1  # any warning at all, fred's included
                    elif entry.get("level") == "INFO" and "redis" in message and "again" in message:
                        infos += 1
            processors.append({
                "readyz_probes_during_outage": len(during),
                "readyz_503_during_outage": sum(1 for s in during if s != 200),
                "first_503_after_kill_ms": None if first_503 is None else round(first_503 - killed_at),
                "ready_again_after_answer_ms": None if back_200 is None else round(back_200 - answered_at),
                "warnings_logged_after_kill": warns,
                "redis_back_lines_logged": infos,
            })
        fanout = {}
        try:
            with open(os.path.join(work, "fanout.json")) as f:
                report = json.load(f)
            fanout = {k: report.get(k) for k in
                      ("ready_clients", "expected", "delivered", "missing", "duplicates")}
            fanout["latency_max_ms"] = (report.get("latency") or {}).get("max_ms")
        except (OSError, ValueError):
            pass

        rel = lambda ms: None if ms is None else round((ms - t0 * 1000) / 1000, 3)
        figures = {
            "alerts_accepted": len(accepted),
            "post_statuses": statuses,
            "windows_open_at_kill": sum(
                1 for s, (a, d, st) in accepted.items() if a < killed_at and st + d * 1000 > killed_at),
            "redis_killed_at_s": rel(killed_at),
            "redis_restarted_at_s": rel(restarted_at),
            "redis_answered_at_s": rel(answered_at),
            "first_event_after_answer_ms": None if first_after is None else round(first_after - answered_at),
            "overdue_closes": len(overdue),
            "overdue_close_lateness_ms": {"max": max(overdue_late, default=None), "p99": pct(overdue_late, 99)},
            "last_overdue_close_after_answer_ms": round(max((e["ms"] for e in overdue), default=answered_at) - answered_at),
            "closes": len(closes),
            "closes_more_than_1s_late": sum(1 for x in late_closes if x > 1000),
            "close_lateness_ms": {"p50": pct(late_closes, 50), "p99": pct(late_closes, 99), "max": max(late_closes, default=None)},
            "alerts_applied_after_their_end": applied_after_end,
            "alerts_lost": lost,
            "processors": processors,
            "clients": fanout,
        }
        print(json.dumps(figures, indent=2))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(figures, f, indent=2)
    finally:
        for name, p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for name, p in procs:
            try:
                p.wait(timeout=25)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["timeout", "30", "rabbitmqctl", "-q", "delete_queue", queue],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["timeout", "30", "rabbitmqctl", "-q", "delete_queue", queue + ".dead"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if args.keep:
            print(f"logs in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
