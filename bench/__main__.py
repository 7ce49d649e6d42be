"""``make bench``: run every benchmark in turn, each as its own process, with its defaults.

``python -m bench [NAME ...]`` runs the named ones only. Each benchmark compares against a
baseline measured in the same run and prints its medians and ratio; README's "Speed" table
is copied from the latest run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

BENCHMARKS = {
    "import_local": "local import vs cp -r; re-import under a second name (issue 2)",
    "hub_import": "Hub import through the loopback server vs snapshot_download (issue 3)",
    "hub_transfers": "ranged parallel Hub transfers through a CDN-like server; resume after SIGKILL (issue 23)",
    "validate": "deep validation throughput vs sha256sum (issue 4)",
    "load": "loading from the store vs from_pretrained of the original folder (issue 5)",
    "checkpoint": "saving a 75%-frozen fine-tune's checkpoint vs saving every tensor (issue 6)",
    "export": "export-model of the 1 GB model vs cp -rL of its view (issue 22)",
    "remote": "push / pull through a loopback S3 server vs obstore directly; fine-tune pull (issue 17)",
    "generate": "generate (verified load + 1 token) vs stock transformers on the view (issue 22)",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"any of: {', '.join(BENCHMARKS)} (default: all)")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    failed = []
    for name in args.names or list(BENCHMARKS):
        print(f"\n=== bench.{name}: {BENCHMARKS[name]}", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{name}"]).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed to run: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
