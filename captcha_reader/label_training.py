"""The labelling page's TensorFlow work, in processes of its own: training runs and ONNX exports.

    python -m captcha_reader.label_training train DIR MODEL [--init-from MODEL] [--epochs N] [--new-images-wait]
    python -m captcha_reader.label_training export MODEL.keras OUT.onnx

`train` trains MODEL (an ordinary .keras file) on DIR's labelled images, writes MODEL with the
suffix .onnx beside it (the page reads suggestions with it, without TensorFlow), and
evaluates the new model on the labelled images: its misreads there (NAME.evaluation.json
beside MODEL, NAME.keras) are the labels the page asks to review. Progress is Keras' `--verbose 2` output.
"""

import argparse
import sys
from pathlib import Path
from typing import Sequence

from captcha_reader.base import UserError
from captcha_reader.evaluation import evaluate_folder
from captcha_reader.export import export_lite
from captcha_reader.files import beside_model
from captcha_reader.label_loop import LabelStore
from captcha_reader.lite import load_lite_reader
from captcha_reader.model import load_keras_reader
from captcha_reader.settings import TrainingSettings
from captcha_reader.training import train


def run(folder: Path, model: Path, init_from: Path | None, epochs: int | None, new_images_wait: bool) -> None:
    """Train, export and evaluate, as the module docstring says."""
    if new_images_wait:  # saved into the folder since the page listed it: not trained under its file name
        LabelStore(folder).open_for_labelling()
    settings = TrainingSettings(data_dir=str(folder), model=str(model), epochs=epochs, verbose=2,
                                init_from=str(init_from) if init_from else None)
    reader = train(settings)
    onnx_path = model.with_suffix(".onnx")
    export_lite(reader, onnx_path)
    evaluate_folder(load_lite_reader(onnx_path), folder, beside_model(model, "evaluation.json"))


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run; user errors become one line on stderr."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    training = commands.add_parser("train", help="train on a folder's labelled images, export, evaluate")
    training.add_argument("folder", type=Path)
    training.add_argument("model", type=Path)
    training.add_argument("--init-from", type=Path)
    training.add_argument("--epochs", type=int)
    training.add_argument("--new-images-wait", action="store_true",
                          help="images labels.csv does not list yet wait for a label (labelling, not review)")
    exporting = commands.add_parser("export", help="write a .keras model as ONNX for reading suggestions")
    exporting.add_argument("model", type=Path)
    exporting.add_argument("onnx", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            run(args.folder, args.model, args.init_from, args.epochs, args.new_images_wait)
        else:
            export_lite(load_keras_reader(args.model), args.onnx)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
