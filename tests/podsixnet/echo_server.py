"""A stock PodSixNet Server on 127.0.0.1 (free port, printed as "PORT n"). Its channels answer
"echo" with the same fields plus "who": "python", and print every message as a JSON line (a
"blob" shortened to its length). Exits 0 once a client has connected and closed again (1 on a
30 s timeout). Usage: echo_server.py [json|rencode]"""
import json
import sys
import time

import jsonmode  # noqa: F401  (first: may switch PodSixNet to JSON)
from PodSixNet.Channel import Channel
from PodSixNet.Server import Server

state = {"connected": 0, "closed": 0}


class EchoChannel(Channel):
    def Network(self, data):
        shown = dict(data)
        if "blob" in shown:
            shown["blob"] = len(shown["blob"])
        print(json.dumps(shown), flush=True)

    def Network_echo(self, data):
        reply = dict(data)
        reply["who"] = "python"
        self.Send(reply)

    def Close(self):
        state["closed"] += 1


class EchoServer(Server):
    channelClass = EchoChannel

    def Connected(self, channel, addr):
        state["connected"] += 1


server = EchoServer(localaddr=("127.0.0.1", 0))
print("PORT", server.socket.getsockname()[1], flush=True)
deadline = time.time() + 30
while time.time() < deadline and not (state["connected"] and state["closed"]):
    server.Pump()
    time.sleep(0.001)
sys.exit(0 if state["closed"] else 1)
