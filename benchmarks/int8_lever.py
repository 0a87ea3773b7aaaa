"""The int8 lever: accuracy and speed of int8-quantized ONNX exports against the float32 one, in one run.

    python benchmarks/int8_lever.py --model /tmp/svc/ocr_captcha.onnx --images /tmp/svc/fresh \
        [--calibration DIR] [--out benchmarks/results] [--quick]

Variants, each made here from the float32 export with onnxruntime.quantization:
- dynamic, every op it can (Conv -> ConvInteger, MatMul -> MatMulInteger, LSTM -> DynamicQuantizeLSTM);
- dynamic, MatMul and LSTM only (the convolutions stay float);
- static QDQ (Conv and MatMul; LSTM has no static kernel), calibrated on 500 training images.
For each: sequence accuracy and CER on the labelled --images, texts equal to float32, and the network's
images/s (batches of 64, and of 1) on the same preprocessed images: the best of interleaved rounds, as the
CPU is shared and interference only ever slows a round down. Writes int8.json to --out (default: a temp folder with --quick).
"""

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import ROOT, first_shipped_images

from onnxruntime.quantization import (  # noqa: E402
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from captcha_reader.data import labelled_items, load_images  # noqa: E402
from captcha_reader.decoding import score  # noqa: E402
from captcha_reader.lite import load_lite_reader  # noqa: E402


class Calibration(CalibrationDataReader):
    """Batches of preprocessed training images for static quantization."""

    def __init__(self, name: str, images: np.ndarray) -> None:
        self.batches = iter([{name: images[i:i + 32]} for i in range(0, len(images), 32)])

    def get_next(self):
        """The next batch, or None at the end."""
        return next(self.batches, None)


def quantized_variants(model: Path, work: Path, calibration: np.ndarray) -> dict[str, Path]:
    """Each int8 variant written next to the others in `work`."""
    paths = {"float32": model}
    paths["int8 dynamic, all ops"] = work / "dynamic_all.onnx"
    quantize_dynamic(model, paths["int8 dynamic, all ops"], weight_type=QuantType.QInt8)
    paths["int8 dynamic, MatMul + LSTM"] = work / "dynamic_matmul_lstm.onnx"
    quantize_dynamic(model, paths["int8 dynamic, MatMul + LSTM"], weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "LSTM"])
    input_name = load_lite_reader(model).input_name
    paths["int8 static QDQ, Conv + MatMul"] = work / "static_qdq.onnx"
    quantize_static(model, paths["int8 static QDQ, Conv + MatMul"], Calibration(input_name, calibration),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["Conv", "MatMul"])
    return paths


def images_per_second(reader, batch: np.ndarray) -> float:
    """Images/s of the network on `batch`, over about a third of a second."""
    reader.logits(batch)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < 0.3:
        reader.logits(batch)
        count += len(batch)
    return count / (time.perf_counter() - started)


def main() -> int:
    """Quantize, score and time every variant; print a table and write int8.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the float32 ONNX export")
    parser.add_argument("--images", required=True, help="labelled test images (1,000 fresh ones)")
    parser.add_argument("--calibration", help="labelled training images to calibrate on, a seeded sample of 500 "
                                              "(default: the first 500 by name of the first 8,000 shipped images, "
                                              "as in the committed int8.json)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="few images and rounds: checks the script only")
    parser.add_argument("--out", help="folder for int8.json (default: benchmarks/results; --quick: a temp folder)")
    args = parser.parse_args()
    out = Path(args.out or (tempfile.mkdtemp(prefix="int8_") if args.quick else ROOT / "benchmarks" / "results"))
    if args.quick and out.resolve() == (ROOT / "benchmarks" / "results").resolve():
        parser.error("--quick never writes into benchmarks/results: give another --out")
    out.mkdir(parents=True, exist_ok=True)
    base = load_lite_reader(args.model)
    test = load_images(labelled_items(args.images)[:64 if args.quick else None], base.spec)
    size = 64 if args.quick else 500
    if args.calibration:
        items = labelled_items(args.calibration)
        items = random.Random(0).sample(items, min(len(items), size))
    else:
        items = first_shipped_images()[:size]
    calibration = load_images(items, base.spec).images
    with tempfile.TemporaryDirectory() as work:
        variants = quantized_variants(Path(args.model), Path(work), calibration)
        readers = {name: load_lite_reader(path) for name, path in variants.items()}
        results = {}
        reference = [r.text for r in base.read_arrays(test.images)]
        for name, reader in readers.items():
            texts = [r.text for r in reader.read_arrays(test.images)]
            seq_acc, cer = score(test.labels, texts)
            results[name] = {"seq_acc": seq_acc, "cer": cer, "same_texts_as_float32": sum(
                a == b for a, b in zip(texts, reference)), "file_mb": round(variants[name].stat().st_size / 1e6, 3),
                "batch64": [], "batch1": []}
        for _ in range(1 if args.quick else args.rounds):
            for name, reader in readers.items():
                results[name]["batch64"].append(images_per_second(reader, test.images[:64]))
                results[name]["batch1"].append(images_per_second(reader, test.images[:1]))
    float32 = results["float32"]
    for row in results.values():
        row["batch64_images_per_s"] = round(max(row.pop("batch64")), 1)
        row["batch1_images_per_s"] = round(max(row.pop("batch1")), 1)
    source = f"`{args.calibration}`" if args.calibration else "the first 8,000 shipped"
    lines = [f"{len(test.labels)} test images from `{args.images}`; calibration: {len(calibration)} images of "
             f"{source}; speeds: the best of {1 if args.quick else args.rounds} interleaved rounds.", "",
             "| variant | sequence accuracy | CER | texts = float32 | MB | images/s, batch 64 | / float32 | images/s, batch 1 "
             "| / float32 |", "|---|---|---|---|---|---|---|---|---|"]
    for name, row in results.items():
        lines.append(f"| {name} | {100 * row['seq_acc']:.2f}% | {100 * row['cer']:.3f}% | "
                     f"{row['same_texts_as_float32']} | {row['file_mb']:.2f} | {row['batch64_images_per_s']:.0f} | "
                     f"{row['batch64_images_per_s'] / float32['batch64_images_per_s']:.2f} | "
                     f"{row['batch1_images_per_s']:.0f} | "
                     f"{row['batch1_images_per_s'] / float32['batch1_images_per_s']:.2f} |")
    print("\n".join(lines))
    (out / "int8.json").write_text(json.dumps({"command": " ".join(sys.argv), "variants": results}, indent=2) + "\n")
    print(f"wrote {out / 'int8.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
