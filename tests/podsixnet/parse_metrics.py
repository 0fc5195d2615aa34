"""Parses a metrics exposition read on stdin with the Prometheus project's own Python parsers
and prints its samples as one JSON object: {"name{label="value",...}": value}, labels sorted.

Usage: parse_metrics.py prometheus|openmetrics < exposition

Exits non-zero (with the parser's traceback) if the text does not parse."""

import json
import sys

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as prometheus_families


def main():
    parse = openmetrics_families if sys.argv[1] == "openmetrics" else prometheus_families
    samples = {}
    for family in parse(sys.stdin.read()):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            key = s.name + ("{" + labels + "}" if labels else "")
            if key in samples:
                sys.exit(f"sample {key} appears twice")
            samples[key] = s.value
    json.dump(samples, sys.stdout)


main()
