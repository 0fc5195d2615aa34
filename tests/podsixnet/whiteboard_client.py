"""The network half of PodSixNet's examples/WhiteboardClient.py (no pygame), in JSON mode: once
the board arrives it draws a three-point line with startline/drawpoint, and exits 0 when the server
has relayed all three points back with one id. Usage: whiteboard_client.py [json|rencode] HOST PORT"""
import json
import sys
import time

import jsonmode  # noqa: F401  (first: may switch PodSixNet to JSON)
from PodSixNet.Connection import ConnectionListener, connection

POINTS = [[5, 5], [50, 5], [50, 50]]


class Whiteboard(ConnectionListener):
    def __init__(self):
        self.relayed = []
        self.sent = False

    def Network_initial(self, data):
        print(json.dumps(data), flush=True)
        connection.Send({"action": "startline", "point": POINTS[0]})
        for p in POINTS[1:]:
            connection.Send({"action": "drawpoint", "point": p})
        self.sent = True

    def Network_startline(self, data):
        self.relayed.append(data)

    def Network_drawpoint(self, data):
        self.relayed.append(data)

    def Network_error(self, data):
        print("error:", data["error"], file=sys.stderr, flush=True)
        sys.exit(2)


board = Whiteboard()
board.Connect((sys.argv[1], int(sys.argv[2])))
deadline = time.time() + 20
while len(board.relayed) < len(POINTS) and time.time() < deadline:
    connection.Pump()
    board.Pump()
    time.sleep(0.001)
ok = [d["point"] for d in board.relayed] == POINTS and len({d["id"] for d in board.relayed}) == 1
sys.exit(0 if ok else 1)
