"""``make bench``: run every benchmark in turn and print their figures.

``python -m bench [NAME ...] [--rounds N]`` runs the named ones only. Results are appended
to bench/out/results.jsonl; README's "Speed" table is copied from the latest run.
"""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = ["import_local"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"any of: {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    for name in args.names or BENCHMARKS:
        importlib.import_module(f"bench.{name}").main(args.rounds)


if __name__ == "__main__":
    main()
