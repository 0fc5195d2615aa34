"""Puts PodSixNet 0.11.0 into JSON mode: both ends swap rencode for JSON (the wire facts say
there is no negotiation). Import this before anything else from PodSixNet."""
import json
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)

import PodSixNet.Channel  # noqa: E402

PodSixNet.Channel.dumps = lambda data: json.dumps(data).encode("utf-8")
PodSixNet.Channel.loads = lambda raw: json.loads(raw.decode("utf-8"))
