"""A stock PodSixNet 0.11.0 chat client that stays in the room: sets NICK, waits until every nick in
EXPECT (comma-separated) is in its players list, says TEXT, then waits until each of EXPECT said
something. Usage: chat_peer.py [json|rencode] HOST PORT NICK TEXT EXPECT. Prints every message
received as a JSON line; exits 0 when it saw a message from each expected nick, 1 at the 20 s
deadline."""
import json
import sys
import time

import jsonmode  # noqa: F401  (first: may switch PodSixNet to JSON)
from PodSixNet.Connection import ConnectionListener, connection

host, port, nick, text = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
expect = set(sys.argv[5].split(","))


class Peer(ConnectionListener):
    def __init__(self):
        self.sent = False
        self.heard = set()

    def Network(self, data):
        print(json.dumps(data), flush=True)

    def Network_connected(self, data):
        connection.Send({"action": "nickname", "nickname": nick})

    def Network_players(self, data):
        if not self.sent and expect <= set(data["players"]) and nick in data["players"]:
            connection.Send({"action": "message", "message": text})
            self.sent = True

    def Network_message(self, data):
        self.heard.add(data["who"])

    def Network_error(self, data):
        print("error:", data["error"], file=sys.stderr, flush=True)
        sys.exit(2)

    def Network_disconnected(self, data):
        sys.exit(3)


peer = Peer()
peer.Connect((host, port))
deadline = time.time() + 20
while not (peer.sent and expect <= peer.heard) and time.time() < deadline:
    connection.Pump()
    peer.Pump()
    time.sleep(0.001)
# Let the last message leave before closing.
for _ in range(20):
    connection.Pump()
    time.sleep(0.001)
sys.exit(0 if peer.sent and expect <= peer.heard else 1)
