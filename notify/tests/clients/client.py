"""Stock python-socketio client against alert-notify: connect over WebSocket,
subscribe with an ack, print the first `alert`. Prints JSON lines like client.js.
Usage: python3 client.py <url> <location>"""
import json
import sys
import threading

import socketio

url, location = sys.argv[1], sys.argv[2]
done = threading.Event()
sio = socketio.Client(reconnection=False)


@sio.on("snapshot")
def snapshot(data):
    def subscribe():
        ack = sio.call("subscribe", {"locations": [location]}, timeout=10)
        print(json.dumps({"step": "ready", "snapshot": data, "ack": ack}), flush=True)

    # call() waits for the ack, so it must not block the handler thread.
    threading.Thread(target=subscribe, daemon=True).start()


@sio.on("alert")
def alert(event):
    print(json.dumps({"step": "alert", "event": event, "transport": sio.transport()}), flush=True)
    done.set()


sio.connect(url, transports=["websocket"], auth={})
if not done.wait(20):
    print("timed out", file=sys.stderr)
    sys.exit(2)
sio.disconnect()
