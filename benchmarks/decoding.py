"""Benchmark: greedy against format-aware CTC decoding, in accuracy and speed, on fresh captchas.

    python benchmarks/decoding.py --model /work/artifacts/default/ocr_captcha.keras
    python benchmarks/decoding.py --model MODEL --quick          # smoke run: 64 images, JSON to /tmp
    python benchmarks/decoding.py --model OLD_MODEL --length 4    # a model saved before it recorded its lengths

The test images are made with `tools/make_captchas.py --count 1000 --seed 2026` (the shipped
family; seed 0 is its training set) unless --test-dir names a labelled folder. The network
runs once; both decoders then read the same logits, so the accuracies differ only by the
decoding. Speeds are images/s on batches of 256: of each decoder alone, and of a whole read
(network + decoder), each the median of --repeats timings in this run.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

import make_captchas  # noqa: E402

from captcha_reader.data import labelled_items, load_images  # noqa: E402
from captcha_reader.decoding import (  # noqa: E402
    TextFormat,
    decode,
    parse_lengths,
    resolve_format,
    score,
)
from captcha_reader.readers import open_reader  # noqa: E402
from captcha_reader.settings import DEFAULT_MODEL  # noqa: E402

BATCH = 256
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "decoding.json"
QUICK_OUT = Path(tempfile.gettempdir()) / "decoding_quick.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model file (default: {DEFAULT_MODEL})")
    parser.add_argument("--test-dir", type=Path, help="labelled test folder (default: fresh captchas, seed 2026)")
    parser.add_argument("--count", type=int, default=1000, help="fresh captchas to make (default 1000)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the fresh captchas (default 2026)")
    parser.add_argument("--length", type=parse_lengths,
                        help="lengths for format-aware decoding, 4 or 4-6 (default: the model's training lengths)")
    parser.add_argument("--repeats", type=int, default=7, help="timings per measurement (default 7)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 64 images, 2 repeats, JSON in the temp folder")
    parser.add_argument("--out", type=Path, help=f"JSON results (default {DEFAULT_OUT}; with --quick {QUICK_OUT})")
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.repeats = 64, 2
    args.out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    return args


def median_seconds(run, repeats: int) -> float:
    """Median wall time of `run()` over `repeats` calls, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def batches(array: np.ndarray) -> list[np.ndarray]:
    """`array` cut into batches of BATCH."""
    return [array[i:i + BATCH] for i in range(0, len(array), BATCH)]


def accuracy_row(truths: list[str], texts: list[str], lengths: tuple[int, int]) -> dict:
    """Sequence accuracy, CER, readings of a length the model was not trained on, and the misreads."""
    seq_acc, cer = score(truths, texts)
    return {"seq_acc": seq_acc, "cer": cer, "n": len(truths),
            "other_length": sum(not lengths[0] <= len(t) <= lengths[1] for t in texts),
            "misreads": [{"truth": a, "read": b} for a, b in zip(truths, texts) if a != b]}


def main(argv: list[str] | None = None) -> int:
    """Measure both decoders on one set of logits and write the table and JSON."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        test_dir = args.test_dir
        if test_dir is None:
            test_dir = Path(scratch) / "fresh"
            make_captchas.main(["--out", str(test_dir), "--count", str(args.count), "--seed", str(args.seed)])
        reader = open_reader(args.model)
        data = load_images(labelled_items(test_dir), reader.spec)
    logits = np.concatenate([reader.logits(batch) for batch in batches(data.images)])
    text_format = TextFormat(lengths=args.length)
    lengths = resolve_format(reader.spec, text_format).lengths
    texts = {"greedy": [r.text for r in decode(logits, reader.spec, greedy=True)],
             "format": [r.text for r in decode(logits, reader.spec, text_format)]}
    rows = {name: accuracy_row(data.labels, texts[name], lengths) for name in texts}

    first = data.images[:BATCH]
    first_logits = logits[:BATCH]
    network_s = median_seconds(lambda: reader.logits(first), args.repeats)
    for name in rows:
        greedy = name == "greedy"
        decode_s = median_seconds(lambda: decode(first_logits, reader.spec, None if greedy else text_format, greedy),
                                  args.repeats * 3)
        rows[name]["decode_images_per_s"] = len(first) / decode_s
        rows[name]["read_images_per_s"] = len(first) / (network_s + decode_s)
        rows[name]["decode_ms_per_batch"] = 1000 * decode_s
    results = {
        "model": str(args.model), "test_dir": str(args.test_dir or f"make_captchas --seed {args.seed}"),
        "count": len(data.labels), "batch": len(first), "format_lengths": list(lengths),
        "model_lengths": [reader.spec.min_label_length, reader.spec.max_label_length],
        "network_images_per_s": len(first) / network_s,
        "format_over_greedy_decode_time": rows["format"]["decode_ms_per_batch"] / rows["greedy"]["decode_ms_per_batch"],
        "format_over_greedy_read_speed": rows["format"]["read_images_per_s"] / rows["greedy"]["read_images_per_s"],
        "decoders": rows, "quick": args.quick,
    }
    print(f"{results['count']} images, format-aware lengths {lengths[0]}-{lengths[1]}, batches of {len(first)}; "
          f"network alone {results['network_images_per_s']:.0f} images/s")
    print("| decoding | seq acc | CER | other length | decode images/s | read images/s |")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['seq_acc']:.2%} | {row['cer']:.4%} | {row['other_length']} | "
              f"{row['decode_images_per_s']:.0f} | {row['read_images_per_s']:.0f} |")
    print(f"format-aware decoding takes {results['format_over_greedy_decode_time']:.1f}x greedy's time; "
          f"a whole read runs at {results['format_over_greedy_read_speed']:.3f}x greedy's speed")
    for name, row in rows.items():
        shown = ", ".join(f"{m['truth']}->{m['read']}" for m in row["misreads"][:10])
        print(f"{name} misreads ({len(row['misreads'])}): {shown}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
