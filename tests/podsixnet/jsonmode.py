"""Puts PodSixNet 0.11.0 into JSON mode when the first argument is "json": both ends swap rencode
for JSON (the wire facts say there is no negotiation). With "rencode" PodSixNet stays stock.
Import this before anything else from PodSixNet; it removes the mode from sys.argv."""
import json
import sys
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)

import PodSixNet.Channel  # noqa: E402

MODE = sys.argv.pop(1) if len(sys.argv) > 1 and sys.argv[1] in ("json", "rencode") else "json"
if MODE == "json":
    PodSixNet.Channel.dumps = lambda data: json.dumps(data).encode("utf-8")
    PodSixNet.Channel.loads = lambda raw: json.loads(raw.decode("utf-8"))
