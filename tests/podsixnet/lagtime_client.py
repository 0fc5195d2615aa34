"""PodSixNet's examples/LagTimeClient.py, in JSON mode: echoes every ping, closes the connection
when ping 10 arrives. Usage: lagtime_client.py [json|rencode] HOST PORT. Exits 0 after the close."""
import sys
import time

import jsonmode  # noqa: F401  (first: may switch PodSixNet to JSON)
from PodSixNet.Connection import ConnectionListener, connection


class LagTimeClient(ConnectionListener):
    def __init__(self):
        self.done = False

    def Network_ping(self, data):
        print("got:", data, flush=True)
        if data["count"] == 10:
            connection.Close()
            self.done = True
        else:
            connection.Send(data)

    def Network_error(self, data):
        print("error:", data["error"], file=sys.stderr, flush=True)
        sys.exit(2)


client = LagTimeClient()
client.Connect((sys.argv[1], int(sys.argv[2])))
deadline = time.time() + 20
while not client.done and time.time() < deadline:
    connection.Pump()
    client.Pump()
    time.sleep(0.001)
# Let the close go out.
for _ in range(10):
    connection.Pump()
sys.exit(0 if client.done else 1)
