#!/usr/bin/env python3
"""Reads a loom TensorBoard log directory with TensorBoard's own reader and checks it.

loom writes events files without TensorFlow or protobuf (train/metrics/tensorboard_writer.h).
This script is the cross-check that TensorBoard itself accepts them: it loads every events
file in LOGDIR with tensorboard's EventFileLoader (TFRecord framing and CRC-32C checks) and
EventAccumulator (what the TensorBoard UI uses for scalars), prints the scalar tags with their
step ranges and values, and, with --jsonl, checks that every loss/accuracy in the metrics file
(JsonlWriter's format) equals the TensorBoard scalar "<split>/<key>" at the same step (to
float32 precision). Exit status 0 when all checks pass, 1 otherwise.

Not part of the C++ test suite (which parses the files itself); run it by hand:
  pip install tensorboard
  LOOM_TB_SAMPLE_DIR=/tmp/loom_tb build/tests/loom_tests \
      --gtest_filter=TensorBoardWriter.SampleRunMatchesItsJsonl
  python3 scripts/check_tensorboard.py /tmp/loom_tb --jsonl /tmp/loom_tb/metrics.jsonl
"""
import argparse
import glob
import json
import math
import os
import platform
import struct
import sys


def check_framing(path, masked_crc32c):
    """Every record: u64 length, masked CRC-32C of it, data, masked CRC-32C of the data."""
    data = open(path, "rb").read()
    at, records, failures = 0, 0, []
    while at < len(data):
        if len(data) - at < 16:
            return failures + [f"{path}: {len(data) - at} stray bytes at offset {at}"]
        (length,) = struct.unpack_from("<Q", data, at)
        (length_crc,) = struct.unpack_from("<I", data, at + 8)
        if length_crc != masked_crc32c(data[at:at + 8]):
            return failures + [f"{path}: bad length CRC of record {records} at offset {at}"]
        end = at + 12 + length
        if end + 4 > len(data):
            return failures + [f"{path}: record {records} at offset {at} runs past the end"]
        (data_crc,) = struct.unpack_from("<I", data, end)
        if data_crc != masked_crc32c(data[at + 12:end]):
            failures.append(f"{path}: bad data CRC of record {records} at offset {at}")
        at, records = end + 4, records + 1
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("logdir")
    parser.add_argument("--jsonl", help="metrics file to compare with the scalars")
    parser.add_argument("--expect-tags", default="", help="comma-separated tags that must exist")
    args = parser.parse_args()

    try:
        import tensorboard
        from tensorboard.backend.event_processing import event_accumulator, event_file_loader
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
    except ImportError:
        print("tensorboard is not installed (pip install tensorboard)", file=sys.stderr)
        return 2

    print(f"python {platform.python_version()}, tensorboard {tensorboard.__version__}")
    failures = []
    files = sorted(glob.glob(os.path.join(args.logdir, "*tfevents*")))
    if not files:
        print(f"FAIL: no events files in {args.logdir}")
        return 1
    for path in files:
        # TensorBoard's reader stops quietly at a damaged record (it treats it as the end of a
        # file still being written), so the framing is also checked here record by record with
        # TensorBoard's masked_crc32c, up to the last byte.
        failures += check_framing(path, masked_crc32c)
        events = list(event_file_loader.EventFileLoader(path).Load())
        first = events[0] if events else None
        ok = first is not None and first.file_version == "brain.Event:2"
        print(f"{os.path.basename(path)}: {len(events)} events, first file_version="
              f"{first.file_version if first else None!r}")
        if not ok:
            failures.append(f"{path}: first event is not file_version brain.Event:2")

    acc = event_accumulator.EventAccumulator(args.logdir,
                                             size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    scalars = {}
    for tag in tags:
        events = acc.Scalars(tag)
        scalars[tag] = {e.step: e.value for e in events}  # a later event of a step wins
        print(f"  {tag}: {len(events)} points, steps {events[0].step}..{events[-1].step}, "
              f"first {events[0].value:.6g}, last {events[-1].value:.6g}")
    for tag in filter(None, args.expect_tags.split(",")):
        if tag not in scalars:
            failures.append(f"missing tag {tag}")

    if args.jsonl:
        expected = {}  # (tag, step) -> (value, line): a resumed run's later record of a step wins
        with open(args.jsonl) as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                record = json.loads(line)
                step, split = record.get("step"), record.get("split", "train")
                for key in ("loss", "accuracy"):
                    value = record.get(key)
                    if isinstance(value, (int, float)) and step is not None:
                        expected[(f"{split}/{key}", step)] = (value, line_no)
        for (tag, step), (value, line_no) in sorted(expected.items()):
            got = scalars.get(tag, {}).get(step)
            if got is None:
                failures.append(f"{args.jsonl}:{line_no}: no scalar {tag} at step {step}")
            elif not math.isclose(got, value, rel_tol=1e-6, abs_tol=1e-7):
                failures.append(f"{args.jsonl}:{line_no}: {tag} at step {step} is {got}, "
                                f"expected {value}")
        print(f"compared {len(expected)} values from {args.jsonl}")

    for msg in failures:
        print("FAIL:", msg)
    print("OK" if not failures else f"{len(failures)} failure(s)")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
