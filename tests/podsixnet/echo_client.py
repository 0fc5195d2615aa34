"""A stock PodSixNet ConnectionListener in JSON mode: prints every event as a JSON line, sends an
echo request once connected, and exits 0 when the echo comes back (1 on timeout, 2 on error)."""
import json
import sys
import time

import jsonmode  # noqa: F401
from PodSixNet.Connection import ConnectionListener, connection

PAYLOAD = {
    "action": "echo",
    "text": "from python",
    "nested": {"list": [1, -2, 3.5, None, True, False, {"deep": []}], "empty": {}},
    "unicode": "h\u00e9llo \u2713 \U0001F600",
}


class Client(ConnectionListener):
    def __init__(self):
        self.done = False

    def Network(self, data):
        print(json.dumps(data), flush=True)

    def Network_connected(self, data):
        self.Send(PAYLOAD)

    def Network_echo(self, data):
        self.done = data.get("text") == PAYLOAD["text"] and data.get("nested") == PAYLOAD["nested"]

    def Network_error(self, data):
        print("error event:", data, file=sys.stderr, flush=True)
        sys.exit(2)


client = Client()
client.Connect((sys.argv[1], int(sys.argv[2])))
deadline = time.time() + 20
while not client.done and time.time() < deadline:
    connection.Pump()
    client.Pump()
    time.sleep(0.001)
sys.exit(0 if client.done else 1)
