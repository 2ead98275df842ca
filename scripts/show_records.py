"""Print a few prediction records from a `conflict-events predict` output folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from conflict_events.inference.batch import read_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--limit", type=int, default=3)
    args = parser.parse_args()
    records = read_records(args.folder)
    # Sentences with actors show both heads at work; fall back to any records.
    shown = [r for r in records if r.get("actors")] or records
    for record in shown[: args.limit]:
        print(json.dumps(record, indent=2, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
