"""PodSixNet 0.11.0's chat example server (examples/ChatServer.py: nickname, message, players), on
the real PodSixNet library in JSON mode, for netlib's benchmarks. Usage:
podsixnet_chat_server.py PORT. Prints "podsixnet-chat listening on 127.0.0.1:PORT"."""
import json
import sys
import warnings
from time import sleep
from weakref import WeakKeyDictionary

warnings.filterwarnings("ignore", category=DeprecationWarning)
import PodSixNet.Channel  # noqa: E402

PodSixNet.Channel.dumps = lambda data: json.dumps(data).encode("utf-8")
PodSixNet.Channel.loads = lambda raw: json.loads(raw.decode("utf-8"))
from PodSixNet.Channel import Channel  # noqa: E402
from PodSixNet.Server import Server  # noqa: E402


class ClientChannel(Channel):
    def __init__(self, *args, **kwargs):
        self.nickname = "anonymous"
        Channel.__init__(self, *args, **kwargs)

    def Close(self):
        self._server.DelPlayer(self)

    def Network_message(self, data):
        self._server.SendToAll({"action": "message", "message": data["message"], "who": self.nickname})

    def Network_nickname(self, data):
        self.nickname = data["nickname"]
        self._server.SendPlayers()


class ChatServer(Server):
    channelClass = ClientChannel

    def __init__(self, *args, **kwargs):
        Server.__init__(self, *args, **kwargs)
        self.players = WeakKeyDictionary()

    def Connected(self, channel, addr):
        self.players[channel] = True
        self.SendPlayers()

    def DelPlayer(self, player):
        del self.players[player]
        self.SendPlayers()

    def SendPlayers(self):
        self.SendToAll({"action": "players", "players": [p.nickname for p in self.players]})

    def SendToAll(self, data):
        [p.Send(data) for p in self.players]

    def Launch(self):
        while True:
            self.Pump()
            sleep(0.0001)


server = ChatServer(localaddr=("127.0.0.1", int(sys.argv[1])), listeners=1024)
print("podsixnet-chat listening on 127.0.0.1:%d" % server.socket.getsockname()[1], flush=True)
server.Launch()
