"""A PodSixNet tag bot (the yardstick for netlib's examples/tag): runs from "it", or chases the
nearest player when "it". Usage: tag_bot.py HOST PORT SECONDS. Prints the states received; exits
0 if it got some."""
import json
import math
import sys
import time

import PodSixNet.Channel
from PodSixNet.Connection import ConnectionListener, connection

PodSixNet.Channel.dumps = lambda data: json.dumps(data).encode("utf-8")
PodSixNet.Channel.loads = lambda raw: json.loads(raw.decode("utf-8"))


class Bot(ConnectionListener):
    def __init__(self, host, port):
        self.me, self.states = None, 0
        self.Connect((host, port))

    def Network_connected(self, data):
        self.me = data.get("id")

    def Network_state(self, data):
        self.states += 1
        pos = {p[0]: p[1] for p in data["players"]}
        if self.me not in pos or data["it"] is None:
            return
        at = pos[self.me]
        dist = lambda p: math.hypot(p[0] - at[0], p[1] - at[1])
        if data["it"] == self.me:
            others = [p for i, p in pos.items() if i != self.me]
            target, away = (min(others, key=dist) if others else None), 1.0
        else:
            target, away = pos.get(data["it"]), -1.0
        if target:
            sign = lambda v: (v > 0) - (v < 0)
            self.Send({"action": "steer", "dx": away * sign(target[0] - at[0]), "dy": away * sign(target[1] - at[1])})


bot = Bot(sys.argv[1], int(sys.argv[2]))
deadline = time.time() + float(sys.argv[3])
while time.time() < deadline:
    connection.Pump()
    bot.Pump()
    time.sleep(0.01)
print(json.dumps({"states": bot.states}), flush=True)
sys.exit(0 if bot.states > 0 else 1)
