"""Counts the lines of code of the two versions of the game, as the newcomer trial did: no blank
lines, no comments (`//`, `#`) and no docstrings. Usage: python3 count_lines.py"""
from pathlib import Path

HERE = Path(__file__).parent


def count(path):
    n, doc = 0, False
    for line in (HERE / path).read_text().splitlines():
        t = line.strip()
        quotes = t.count('"""')
        if doc or t.startswith('"""'):
            doc = doc != (quotes % 2 == 1)
            continue
        if t and not t.startswith(("//", "#")):
            n += 1
    return n


netlib = sum(count(p) for p in ["src/lib.rs", "src/bin/tag-server.rs", "src/bin/tag-bot.rs"])
podsixnet = sum(count(p) for p in ["podsixnet/tag_server.py", "podsixnet/tag_bot.py"])
print(f"netlib {netlib} lines, PodSixNet {podsixnet} lines: {netlib / podsixnet:.2f}x")
