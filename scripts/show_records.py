"""Print a few prediction records from a `predict` output folder (JSONL or Parquet shards)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def read_records(folder: Path) -> list[dict]:
    records: list[dict] = []
    for shard in sorted(folder.glob("*.jsonl")):
        records += [json.loads(line) for line in shard.read_text(encoding="utf-8").splitlines() if line.strip()]
    for shard in sorted(folder.glob("*.parquet")):
        records += pd.read_parquet(shard).to_dict(orient="records")
    return [r for r in records if isinstance(r, dict) and "doc_id" in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--limit", type=int, default=3)
    args = parser.parse_args()
    records = [r for r in read_records(args.folder) if r.get("actors")] or read_records(args.folder)
    for record in records[: args.limit]:
        print(json.dumps(record, indent=2, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
