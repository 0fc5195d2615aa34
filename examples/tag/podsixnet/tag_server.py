"""The same game of tag on PodSixNet 0.11.0, as a PodSixNet user writes it: the yardstick for
netlib's version (examples/tag/src). Usage: tag_server.py HOST PORT. JSON mode (see
tests/podsixnet/jsonmode.py) so that netlib's bots can play here too."""
import json
import math
import sys
import time

import PodSixNet.Channel
from PodSixNet.Channel import Channel
from PodSixNet.Server import Server

PodSixNet.Channel.dumps = lambda data: json.dumps(data).encode("utf-8")
PodSixNet.Channel.loads = lambda raw: json.loads(raw.decode("utf-8"))

TICK_HZ, FIELD, SPEED, REACH = 20, 400.0, 120.0, 12.0


class Player(Channel):
    def Network_steer(self, data):
        self.heading = (max(-1.0, min(1.0, data["dx"])), max(-1.0, min(1.0, data["dy"])))

    def Close(self):
        self._server.Left(self)


class TagServer(Server):
    channelClass = Player

    def __init__(self, *args, **kwargs):
        Server.__init__(self, *args, **kwargs)
        self.players, self.it, self.last_it, self.tags, self.serial = [], None, None, 0, 0

    def Connected(self, channel, addr):
        self.serial += 1
        channel.id, channel.heading = self.serial, (0.0, 0.0)
        channel.pos = ((self.serial * 97.0) % FIELD, (self.serial * 61.0) % FIELD)
        self.players.append(channel)
        self.it = self.it or channel
        channel.Send({"action": "connected", "id": channel.id})

    def Left(self, channel):
        self.players.remove(channel)
        if self.it is channel:
            self.it = self.players[0] if self.players else None

    def Step(self, dt):
        for p in self.players:
            p.pos = tuple(max(0.0, min(FIELD, p.pos[i] + p.heading[i] * SPEED * dt)) for i in (0, 1))
        if self.it:
            for p in self.players:
                near = math.hypot(p.pos[0] - self.it.pos[0], p.pos[1] - self.it.pos[1]) < REACH
                if p is not self.it and p is not self.last_it and near:
                    self.it, self.last_it, self.tags = p, self.it, self.tags + 1
                    self.SendToAll({"action": "tagged", "it": p.id})
                    break
        players = [[p.id, list(p.pos)] for p in self.players]
        self.SendToAll({"action": "state", "it": self.it.id if self.it else None, "players": players})

    def SendToAll(self, data):
        for p in self.players:
            p.Send(data)


server = TagServer(localaddr=(sys.argv[1], int(sys.argv[2])))
print("tag_server.py listening on %s:%d" % server.socket.getsockname()[:2], flush=True)
while True:
    server.Pump()
    server.Step(1.0 / TICK_HZ)
    time.sleep(1.0 / TICK_HZ)
