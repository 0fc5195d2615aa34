"""A stock PodSixNet 0.11.0 chat client (rencode, or JSON mode), written as PodSixNet's own examples/ChatClient.py
is: a ConnectionListener with Network_players / Network_message, sending {"action": "nickname"}
and {"action": "message"}. Usage: chat_client.py [json|rencode] HOST PORT NICK TEXT. Prints every event as a JSON
line; exits 0 once the server relayed TEXT back with who=NICK and NICK was in a players list."""
import json
import sys
import time

import jsonmode  # noqa: F401  (first: may switch PodSixNet to JSON)
from PodSixNet.Connection import ConnectionListener, connection

host, port, nick, text = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


class Chat(ConnectionListener):
    def __init__(self):
        self.listed = False
        self.echoed = False
        self.sent = False

    def Network(self, data):
        print(json.dumps(data), flush=True)

    def Network_connected(self, data):
        connection.Send({"action": "nickname", "nickname": nick})

    def Network_players(self, data):
        self.listed = self.listed or nick in data["players"]
        if self.listed and not self.sent:
            connection.Send({"action": "message", "message": text})
            self.sent = True

    def Network_message(self, data):
        self.echoed = self.echoed or (data["who"] == nick and data["message"] == text)

    def Network_error(self, data):
        print("error:", data["error"], file=sys.stderr, flush=True)
        sys.exit(2)

    def Network_disconnected(self, data):
        sys.exit(3)


chat = Chat()
chat.Connect((host, port))
deadline = time.time() + 20
while not (chat.listed and chat.echoed) and time.time() < deadline:
    connection.Pump()
    chat.Pump()
    time.sleep(0.001)
sys.exit(0 if chat.listed and chat.echoed else 1)
