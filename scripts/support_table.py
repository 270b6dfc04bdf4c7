"""Print the support table of the architecture matrix (tests/architectures.py) as markdown.

Runs the same per-cell checks as tests/test_architectures.py (tiny random models, offline, about
a minute on one core) and prints rows = architectures, columns = explainers and removal
operators, cells = ✓, or ✗ with a footnote naming the refusal.

    python scripts/support_table.py           # print the table
    python scripts/support_table.py --write   # also replace the README block between
                                              # <!-- support-table:start/end -->
    python scripts/support_table.py --times   # per-architecture seconds on stderr

Exits 1 when a cell fails (a crash or a broken contract rather than a clean refusal).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update README.md in place")
    parser.add_argument("--times", action="store_true", help="seconds per architecture")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    import architectures as A

    results = A.all_results()
    text = A.table(results)
    print(text, end="")
    failed = {k: c for k, c in results.items() if c.status == "failed"}
    for (label, column), cell in failed.items():
        print(f"FAILED {label} x {column}: {cell.reason}", file=sys.stderr)
    if args.times:
        for arch in A.ARCHS:
            secs = sum(c.seconds for (lab, _), c in results.items() if lab == arch.label)
            print(f"{arch.label}: {secs:.1f} s", file=sys.stderr)
    if args.write:
        if failed:
            print("not writing README.md: some cells failed", file=sys.stderr)
            return 1
        readme = ROOT / "README.md"
        old = readme.read_text(encoding="utf-8")
        a = old.index(A.START) + len(A.START)
        b = old.index(A.END)
        readme.write_text(old[:a] + "\n" + text + old[b:], encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
