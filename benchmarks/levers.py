"""What each inference lever buys: images/s of the network alone, for variants of our model.

    python benchmarks/levers.py [--rounds 5]

Times `predict_on_batch` on batches of 256 random images (no file reading, no
preprocessing: the network only), for the Keras example with BatchNorm (B), our
model (C) with and without folded BatchNorm, called directly instead of through
`predict_on_batch`, and the alternatives we tried. Untrained weights: speed does not
depend on them. Accuracy of the variants we trained is in benchmarks/levers.md.
Writes the table into benchmarks/results.json ("levers"); run.py renders it.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT.parent), str(ROOT)]

import ocr_captcha  # noqa: E402
from ocr_captcha import keras, layers  # noqa: E402
from ocr_core import ModelSpec  # noqa: E402
from run import build_keras_example, machine  # noqa: E402

DIGITS = "0123456789"


def crnn_variant(spec: ModelSpec, filters=(16, 32, 64), last_pool=(2, 1), recurrent=layers.LSTM,
                 units=(96, 64), columns_to_logits: bool = True) -> keras.Model:
    """Our architecture (BatchNorm folded) with one of its parts changed."""
    inputs = keras.Input(shape=(spec.height, spec.width))
    x = layers.Reshape((spec.height, spec.width, 1))(inputs)
    for count, pool in zip(filters, ((2, 2), (2, 2), last_pool)):
        x = layers.Conv2D(count, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(pool)(x)
    x = layers.Permute((2, 1, 3))(x)
    x = layers.Reshape((spec.width // (4 * last_pool[1]), -1))(x)
    columns = layers.Dense(96, activation="relu")(x)
    x = columns
    for size in units:
        x = layers.Bidirectional(recurrent(size, return_sequences=True))(x)
    if columns_to_logits:
        x = layers.Concatenate()([x, columns])
    return keras.Model(inputs, layers.Dense(spec.num_classes)(x))


def images_per_second(predict, height: int, width: int, rounds: int) -> float:
    """Best of `rounds` timings of 4 batches of 256 images."""
    batch = np.random.default_rng(0).random((256, height, width), dtype=np.float32)
    predict(batch)
    best = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(4):
            predict(batch)
        best = max(best, 4 * 256 / (time.perf_counter() - started))
    return round(best, 1)


def main() -> int:
    """Time every variant and record the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT))
    args = parser.parse_args()
    ours = ModelSpec(DIGITS, 48, 128, 4)  # the geometry infer_spec picks for the shipped 160x60 images
    c = ocr_captcha.build_model(ours)
    variants = {
        "B: Keras example + BatchNorm, 50x200": (build_keras_example(ModelSpec(DIGITS, 50, 200, 4), True), 50, 200),
        "C as saved (BatchNorm layers)": (c, 48, 128),
        "C, BatchNorm folded (what Reader runs)": (ocr_captcha.fold_batch_norm(c), 48, 128),
        "C, folded, called as model(x)": (ocr_captcha.fold_batch_norm(c), 48, 128),
        "C with 32/64/96 filters": (crnn_variant(ours, (32, 64, 96)), 48, 128),
        "C without the path from the columns to the logits": (crnn_variant(ours, columns_to_logits=False), 48, 128),
        "C with GRU instead of LSTM": (crnn_variant(ours, recurrent=layers.GRU), 48, 128),
        "C with BiLSTMs of 64 and 64": (crnn_variant(ours, units=(64, 64)), 48, 128),
        "C with one time step per 8 columns": (crnn_variant(ours, last_pool=(2, 2)), 48, 128),
    }
    table = {}
    for name, (model, height, width) in variants.items():
        predict = (lambda batch, m=model: m(batch, training=False)) if "model(x)" in name else model.predict_on_batch
        table[name] = {"images_per_s": images_per_second(predict, height, width, args.rounds),
                       "params": int(model.count_params())}
        print(f"{name}: {table[name]['images_per_s']:.0f} images/s", flush=True)
    results_path = Path(args.out) / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results["levers"] = {"command": "python benchmarks/levers.py " + " ".join(sys.argv[1:]), "machine": machine(),
                         "variants": table}
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
