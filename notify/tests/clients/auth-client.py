"""Stock python-socketio client with a token in the handshake `auth`: prints one JSON
line, {"step": "snapshot", "locations": [...]} once connected or {"step":
"connect_error", "message": ...} when refused, then exits.
Usage: python3 auth-client.py <url> <token or "">"""
import json
import sys
import threading

import socketio

url, token = sys.argv[1], sys.argv[2]
done = threading.Event()
sio = socketio.Client(reconnection=False)


@sio.on("connect_error")
def connect_error(data):
    message = data.get("message") if isinstance(data, dict) else data
    print(json.dumps({"step": "connect_error", "message": message}), flush=True)
    done.set()


@sio.on("snapshot")
def snapshot(data):
    locations = [window["location"] for window in data["active"]]
    print(json.dumps({"step": "snapshot", "locations": locations}), flush=True)
    done.set()


try:
    sio.connect(url, transports=["websocket"], auth={"token": token} if token else {})
except socketio.exceptions.ConnectionError:
    pass  # the connect_error handler has said why
if not done.wait(20):
    print("timed out", file=sys.stderr)
    sys.exit(2)
if sio.connected:
    sio.disconnect()
