"""A stock PodSixNet ConnectionListener: prints every event as a JSON line (the 200 KB blob
shortened to its length), sends PAYLOAD once connected, and exits 0 when the echo comes back
equal (1 on timeout or mismatch, 2 on error). Usage: echo_client.py [json|rencode] HOST PORT"""
import json
import sys
import time

import jsonmode  # noqa: F401  (first: may switch PodSixNet to JSON)
from payload import PAYLOAD
from PodSixNet.Connection import ConnectionListener, connection


class Client(ConnectionListener):
    def __init__(self):
        self.result = None

    def Network(self, data):
        shown = dict(data)
        if "blob" in shown:
            shown["blob"] = len(shown["blob"])
        print(json.dumps(shown), flush=True)

    def Network_connected(self, data):
        self.Send(PAYLOAD)

    def Network_echo(self, data):
        same = {k: v for k, v in data.items() if k != "who"} == PAYLOAD
        if not same:
            for k in PAYLOAD:
                if data.get(k) != PAYLOAD[k]:
                    print("mismatch in", k, repr(data.get(k))[:200], file=sys.stderr, flush=True)
        self.result = same

    def Network_error(self, data):
        print("error event:", data, file=sys.stderr, flush=True)
        sys.exit(2)


client = Client()
client.Connect((sys.argv[1], int(sys.argv[2])))
deadline = time.time() + 20
while client.result is None and time.time() < deadline:
    connection.Pump()
    client.Pump()
    time.sleep(0.001)
sys.exit(0 if client.result else 1)
