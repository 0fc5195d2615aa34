"""The rich payload both interop directions exchange: nested values, unicode, large and negative
integers, floats (exact in float32, since PodSixNet's Send encodes floats as float32), booleans,
null, empty containers and a 200 KB string."""

PAYLOAD = {
    "action": "echo",
    "text": "from python",
    "nested": {"list": [1, -2, 2.5, None, True, False, {"deep": []}], "empty": {}, "e": []},
    "unicode": "h\u00e9llo \u2713 \U0001F600",
    "ints": [0, 43, -32, -33, 1000, -70000, 2**40, -2**62, 2**63 - 1, 2**64 - 1],
    "floats": [2.5, -0.75, 1024.125, 0.0],
    "blob": "z" * 200_000,
}
