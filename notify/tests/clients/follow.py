"""Stock python-socketio client (asyncio) with its default reconnection, and only what
its docs show: `auth` as a callable (called before every connection attempt) sends
`since`, the last event seen, so a reconnect resumes. Prints JSON lines like follow.js;
runs until stdin closes. Usage: python3 follow.py <url>

asyncio's client, not the threaded `socketio.Client`: that one runs each message's
handler in a thread of its own, so what it prints is not in the order received."""
import asyncio
import json
import sys

import socketio

url = sys.argv[1]
since = None
sio = socketio.AsyncClient(reconnection_delay=0.1, reconnection_delay_max=0.5)


def out(line):
    print(json.dumps(line), flush=True)


@sio.event
async def connect():
    out({"step": "connect"})


@sio.event
async def disconnect(reason=None):
    out({"step": "disconnect", "reason": str(reason)})


@sio.on("snapshot")
async def snapshot(data):
    global since
    missed = data.get("missed") or []
    for event in missed:
        since = {"epoch": event["epoch"], "offset": event["offset"]}
    if since is None and data.get("offset"):
        since = {"epoch": data["epoch"], "offset": data["offset"]}
    out({"step": "snapshot", "recovered": data.get("recovered"), "missed": [e["offset"] for e in missed]})


@sio.on("alert")
async def alert(event):
    global since
    since = {"epoch": event["epoch"], "offset": event["offset"]}
    out({"step": "alert", "offset": event["offset"]})


async def main():
    await sio.connect(url, transports=["websocket"], auth=lambda: {"since": since} if since else {})
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await sio.disconnect()


asyncio.run(main())
