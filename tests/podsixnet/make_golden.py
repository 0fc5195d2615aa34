"""Writes golden.json: byte-exact rencode encodings made by the real PodSixNet 0.11.0 package,
for netlib's golden tests (tests/golden.rs). Run with the PodSixNet virtualenv's Python:
    target/podsixnet-venv/bin/python tests/podsixnet/make_golden.py > tests/podsixnet/golden.json

Each vector holds:
- send:   what PodSixNet's Channel.Send puts in a frame (rencode dumps, floats as float32);
- dumps64: rencode dumps(value, 64), floats as float64, which is what netlib sends;
- decoded: what PodSixNet's loads() gives back for `send`, written as JSON by Python's json module
  (tuples become arrays, non-string keys become their JSON text);
- exact:  whether that JSON text means exactly `value` again, so that netlib, encoding the JSON,
  must reproduce `dumps64` byte for byte.
"""
import json
import sys

from PodSixNet.rencode import dumps, loads

CASES = [
    ("nickname", {"action": "nickname", "nickname": "bob"}),
    ("connected", {"action": "connected"}),
    ("small and fixed-width ints", {"action": "ints", "v": [
        0, 43, 44, -1, -32, -33, 127, 128, -128, -129, 32767, 32768, -32768, -32769,
        2**31 - 1, 2**31, -2**31, -2**31 - 1, 2**63 - 1, -2**63]}),
    ("unsigned 64-bit ints", {"action": "u64", "v": [2**63, 2**64 - 1]}),
    ("ints beyond 64 bits", {"action": "big", "v": [10**20, -2**63 - 1, -(10**30)]}),
    ("floats", {"action": "f", "v": [0.1, -2.5, 3.14159, 0.0, 0.001, 123456.789]}),
    ("strings", {"action": "s", "v": ["", "a", "x" * 63, "x" * 64, "h\u00e9llo \u2713 \U0001F600", "y" * 1000]}),
    ("nested, booleans, null, empty containers", {"action": "n", "list": [[], {}, [1, [2, [3]]], {"a": {"b": None}}],
                                                 "t": True, "f": False, "none": None}),
    ("tuples", {"action": "t", "v": (1, (2, 3), ())}),
    ("long list", {"action": "l", "v": list(range(40))}),
    ("long tuple", {"action": "lt", "v": tuple(range(33))}),
    ("dict of 30 keys", dict([("action", "d")] + [("k%d" % i, i) for i in range(29)])),
    ("non-string keys", {"action": "k", "m": {5: "five", -40: "neg", True: "t", None: "n", 1.5: "f"}}),
    ("unicode action", {"action": "\u00e9v\u00e9nement", "\u2713": "ok"}),
]


def exact(value):
    """Whether JSON text means exactly this Python value (types included)."""
    if isinstance(value, tuple):
        return False
    if isinstance(value, list):
        return all(exact(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) for k in value) and all(exact(v) for v in value.values())
    if isinstance(value, bool) or value is None or isinstance(value, (str, float)):
        return True
    if isinstance(value, int):
        return -2**63 <= value < 2**64
    return False


vectors = []
for name, value in CASES:
    send = dumps(value)  # float_bits=32, as Channel.Send
    vectors.append({
        "name": name,
        "send": send.hex(),
        "dumps64": dumps(value, 64).hex(),
        "decoded": json.dumps(loads(send)),
        "value": json.dumps(value) if exact(value) else None,
        "exact": exact(value),
    })
json.dump({"podsixnet": "0.11.0", "vectors": vectors}, sys.stdout, indent=1)
sys.stdout.write("\n")
