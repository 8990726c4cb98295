"""
Run `vaswani pretrain --streaming` (alone or under torchrun) and record, for each process, what the stream gave and
what training read:

    python tests/stream_worker.py REPORT_DIR pretrain --objective clm --streaming ...

Everything after REPORT_DIR is passed to `vaswani.cli.main` unchanged. Each process appends, as it happens (a run
killed midway keeps what it wrote), one JSON line per event to REPORT_DIR/rank{r}.jsonl:

- {"row": [ids...], "pass": p, "reading": k}: a block the stream yielded (its tokens without padding), its pass over
  the corpus, and which reading of the stream gave it (each `iter()` is one: a probe reads a batch before training);
- {"batch": [[ids...], ...], "reading": k}: a batch the data loader collated (input ids, padding included).
"""

import json
import os
import sys
from pathlib import Path


def main() -> int:
    report_dir = Path(sys.argv[1])
    report_dir.mkdir(parents=True, exist_ok=True)
    log = open(report_dir / f"rank{int(os.environ.get('RANK', '0'))}.jsonl", "a", buffering=1)

    from vaswani import cli
    from vaswani.training import streaming

    original_iter, original_prepare = streaming.StreamingBlocks.__iter__, streaming.prepare_streaming

    readings = [0]

    def rows(self):
        readings[0] += 1
        reading = readings[0]
        for row in original_iter(self):
            tokens = row["input_ids"][row["attention_mask"].bool()].tolist()
            log.write(json.dumps({"row": tokens, "pass": self._state["epoch"], "reading": reading}) + "\n")
            yield row

    def prepare(*args, **kwargs):
        prepared = original_prepare(*args, **kwargs)
        collate = prepared.collator

        def recorded(examples):
            batch = collate(examples)
            log.write(json.dumps({"batch": batch["input_ids"].tolist(), "reading": readings[0]}) + "\n")
            return batch

        prepared.collator = recorded
        return prepared

    streaming.StreamingBlocks.__iter__, streaming.prepare_streaming = rows, prepare
    try:
        return cli.main(sys.argv[2:])
    finally:
        log.close()


if __name__ == "__main__":
    raise SystemExit(main())
