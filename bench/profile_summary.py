"""Where a profiled service spends its samples: `bench/run.py --profile DIR` writes py-spy's
raw (collapsed) stacks per process; this prints, per file, the functions with the most
samples on the stack (inclusive) and at the top of it (self), as shares of all samples.

    .venv/bin/python bench/profile_summary.py DIR [--top 25] [--match status-projector]
        [--under TransactionalConsumer]   # shares of the samples whose stack holds such a frame
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def frames_of(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rstrip().rpartition(" ")
    # py-spy's raw frame: "function (path/to/module.py:line)"; the line number is dropped so
    # one function is one row.
    names = []
    for frame in stack.split(";"):
        function, _, where = frame.partition(" (")
        module = where.rsplit("/", 1)[-1].split(":", 1)[0]
        names.append(f"{function} ({module})")
    return names, int(count)


def summarise(path: Path, top: int, under: str = "") -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        names, count = frames_of(line)
        if under and not any(name.startswith(under) for name in names):
            continue
        total += count
        own[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    if not total:
        return f"## {path.name}: no samples\n"
    rows = [
        f"## {path.name}: {total:,} samples",
        "",
        "| inclusive | self | function (module) |",
        "|---|---|---|",
    ]
    for name, count in inclusive.most_common(top):
        rows.append(f"| {count / total:.1%} | {own[name] / total:.1%} | `{name}` |")
    rows += ["", "Most self time:", ""]
    rows += [f"- {count / total:.1%} `{name}`" for name, count in own.most_common(top)]
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="")
    parser.add_argument("--under", default="", help="only stacks holding a frame that starts with this")
    args = parser.parse_args()
    for path in sorted(args.directory.glob("*.txt")):
        if args.match in path.name:
            print(summarise(path, args.top, args.under))


if __name__ == "__main__":
    main()
