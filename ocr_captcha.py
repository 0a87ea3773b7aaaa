"""OCR model for reading captchas: a CNN + BiLSTM network trained with CTC loss.

    python ocr_captcha.py                          # train on captcha_images/, save model/ocr_captcha.keras
    python ocr_captcha.py --data-dir DIR --epochs 40
    python ocr_captcha.py --label DIR              # label a folder in the browser, a model suggesting

Every image in the data folder is a captcha whose file name is its label (`0427.png`,
or `0427_13.png` when labels repeat). Training goes in four steps, each in the package:

1. Data (`captcha_reader/data.py`): the images are decoded once into memory, grayscale
   and resized to a fixed height; the charset and the longest label come from the labels;
   a seeded permutation holds out the validation images.
2. Model (`captcha_reader/model.py`): three convolution blocks read columns of pixels,
   two bidirectional LSTMs read the sequence of columns, and a dense layer gives each
   time step (one per 4 columns) a score per character plus the CTC blank.
3. Training (`captcha_reader/training.py`): CTC loss, Adam with warm-up and cosine decay,
   a moving average of the weights, early stopping, and backups that let an interrupted
   run resume.
4. Saving: one `.keras` file carries the network, the charset and the geometry, so
   `predict_example.py` needs nothing else to read new captchas.

This script is the command line around those steps: it turns flags into one
TrainingSettings object (checked as the flags are parsed) and runs the mode they ask for;
`--unlabelled` hands its folder to captcha_reader/pseudo_labels.py beside the settings.
"""

import argparse
import functools
import sys
from pathlib import Path
from typing import Sequence

from captcha_reader.base import DatasetError, SettingError, UserError, quiet_when_output_closes
from captcha_reader.files import (
    beside_model,
    check_output_file,
    check_output_folder,
    check_writable,
    has_backup,
    labels_only_model,
    same_path,
)
from captcha_reader.reading import named_model
from captcha_reader.settings import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CAPACITY,
    DEFAULT_DATA_DIR,
    DEFAULT_IMG_HEIGHT,
    DEFAULT_LEARNING_RATE,
    DEFAULT_MODEL,
    DEFAULT_PATIENCE,
    DEFAULT_SEED,
    DEFAULT_VAL_SPLIT,
    MAX_AUTO_EPOCHS,
    MAX_IMG_HEIGHT,
    MAX_IMG_WIDTH,
    MAX_PSEUDO_LABELLED,
    MIN_AUTO_EPOCHS,
    MIN_IMG_HEIGHT,
    MIN_TRAINING_IMAGES,
    PSEUDO_LABEL_CONFIDENCE,
    SMALL_DATA_BATCH_SIZE,
    SMALL_DATA_BELOW,
    STRATEGIES,
    OneLineParser,
    TrainingSettings,
    port_number,
)

# The jobs besides training, one flag each (mutually exclusive); their dests on the parsed flags.
MODES = ("label", "evaluate", "audit", "export_lite", "export_savedmodel")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = OneLineParser(
        description="Train a CNN + BiLSTM + CTC captcha reader on a folder of images named by their labels.",
    )
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="folder of labelled images (default: %(default)s)")
    parser.add_argument("--model", help=f"model file: written by training, read by other modes (default: {DEFAULT_MODEL}; "
                                         "for --label: the shipped base model if there is one)")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--evaluate", metavar="DIR", help="score --model on a labelled folder (no training)")
    modes.add_argument("--audit", metavar="DIR", help="rank a folder's files by how likely their labels are wrong")
    modes.add_argument("--export-lite", metavar="PATH", help="write --model as one ONNX file for the light runtime")
    parser.add_argument("--int8", action="store_true",
                        help="with --export-lite: int8 weights for the LSTMs and dense layers (smaller, faster, same texts"
                             " on 1,000 fresh images)")
    modes.add_argument("--export-savedmodel", metavar="DIR", help="write --model as a SavedModel for TF Serving in DIR/1")
    modes.add_argument("--label", metavar="DIR",
                       help="open a local labelling page for a folder of images (suggestions from --model if given)")
    parser.add_argument("--port", type=port_number, default=8765, help="port of the --label page (default: %(default)s)")
    parser.add_argument("--review", metavar="REPORT", action="append", default=[],
                        help="with --label: review the suspects of an --audit or the misreads of an --evaluate report")
    parser.add_argument("--report", metavar="FILE",
                        help="JSON report of --evaluate or --audit (default: NAME.evaluation.json or NAME.audit.json"
                             " beside the model NAME.keras)")
    parser.add_argument("--folds", type=int, default=5, help="models trained by --audit (default: %(default)s)")
    parser.add_argument("--test-dir", metavar="DIR", help="after training, evaluate on this labelled folder")
    parser.add_argument("--unlabelled", metavar="DIR",
                        help="unlabelled images of the same captchas: after a first run on the labels, the readings"
                             f" it is sure of (confidence at least {PSEUDO_LABEL_CONFIDENCE}; at most"
                             f" {MAX_PSEUDO_LABELLED:,}) join the labels for a second run, whose model is saved; the"
                             " first run's model is kept beside it")
    parser.add_argument("--init-from", metavar="MODEL",
                        help="fine-tune this saved model (base: the shipped base model; scratch: a new network)"
                             " (default: the base model when the labels use letters it knows and no other geometry"
                             " or capacity is asked for; else a new network)")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"maximum number of epochs (default: as many as make training see {MIN_TRAINING_IMAGES:,} "
                             f"images, at least {MIN_AUTO_EPOCHS}, at most {MAX_AUTO_EPOCHS})")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"images per training step and replica (default: {DEFAULT_BATCH_SIZE}, "
                             f"{SMALL_DATA_BATCH_SIZE} below {SMALL_DATA_BELOW:,} training images)")
    parser.add_argument("--learning-rate", type=float, default=DEFAULT_LEARNING_RATE,
                        help="peak learning rate (cosine schedule) (default: %(default)s)")
    parser.add_argument("--patience", type=int, default=None,
                        help=f"epochs without a better val loss before stopping (default: {DEFAULT_PATIENCE}, "
                             "or half the epochs if more)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="seed for the split, shuffling and weights (default: %(default)s)")
    parser.add_argument("--val-split", type=float, default=DEFAULT_VAL_SPLIT,
                        help="fraction of images held out for validation (default: %(default)s)")
    parser.add_argument("--img-height", type=int, default=DEFAULT_IMG_HEIGHT,
                        help=f"model input height, {MIN_IMG_HEIGHT} to {MAX_IMG_HEIGHT} (default: %(default)s)")
    parser.add_argument("--img-width", type=int, default=None,
                        help=f"model input width, at most {MAX_IMG_WIDTH} (default: from the median aspect ratio of"
                             " the data)")
    parser.add_argument("--capacity", type=int, default=None,
                        help=f"convolution filters: 16, 32 and 64 times this (default: {DEFAULT_CAPACITY};"
                             " fine-tuning keeps the model's own)")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                        help=f"random distortions of training images (default: on below {SMALL_DATA_BELOW:,} of them)")
    parser.add_argument("--restart", action="store_true", help="ignore the backup of an interrupted run")
    parser.add_argument("--strategy", choices=STRATEGIES, default="auto",
                        help="tf.distribute strategy; multiworker reads TF_CONFIG (default: %(default)s)")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1, help="Keras progress output")
    args = parser.parse_args(argv)
    for flag in ("init_from", "unlabelled"):
        if getattr(args, flag) and mode_of(args) != "train":
            parser.error(f"--{flag.replace('_', '-')} is for training only")
    if args.int8 and not args.export_lite:
        parser.error("--int8 goes with --export-lite")
    if args.review and not args.label:
        parser.error("--review goes with --label DIR")
    if args.folds < 2:
        parser.error(f"--folds: must be at least 2, got {args.folds}")
    if args.model is None and not args.label:
        args.model = DEFAULT_MODEL  # --label alone means "suggest with the base model, if any"
    if args.model is not None and not Path(args.model).name:
        parser.error(f"--model: {args.model!r} names no file; give a path such as model/mine.keras")
    try:
        args.settings = settings_from(args)  # in every mode: TrainingSettings checks the values, for all callers
    except SettingError as error:
        parser.error(f"--{error.name.replace('_', '-')}: {error.problem}")
    except UserError as error:  # --init-from base with no base model installed
        parser.error(str(error))
    return args


def mode_of(args: argparse.Namespace) -> str:
    """Which job the flags ask for: the first mode flag given, else training."""
    return next((mode for mode in MODES if getattr(args, mode)), "train")


def settings_from(args: argparse.Namespace) -> TrainingSettings:
    """The training settings the flags ask for."""
    return TrainingSettings(
        data_dir=args.data_dir, model=args.model or DEFAULT_MODEL,
        init_from=named_model(args.init_from) if args.init_from else None, test_dir=args.test_dir,
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate, patience=args.patience,
        seed=args.seed, val_split=args.val_split, img_height=args.img_height, img_width=args.img_width,
        capacity=args.capacity,
        augment=args.augment, strategy=args.strategy, restart=args.restart, verbose=args.verbose,
    )


def check_mode_paths(args: argparse.Namespace) -> None:
    """Before any work: no output of a mode may overwrite the model or an input, or land among the images it reads."""
    model = Path(args.model)
    if args.audit and not args.report and (model.is_dir() or model.suffix != ".keras"):
        raise DatasetError(f"--model {model}: the audit names its report after a model file (NAME.keras gives"
                           " NAME.audit.json); give a path ending in .keras, or --report FILE")
    if args.evaluate or args.audit:
        report = report_path(args)
        folder = args.evaluate or args.audit
        for output in (report, report.with_suffix(".png")) if args.audit else (report,):
            check_output_file(output, "--report", {"--model": model, "the folder": folder})
        if args.audit:
            check_output_folder(report.parent, "the audit's contact sheet", {"--audit": args.audit})
        check_writable(report.parent, "the report")
    elif args.export_lite:
        check_output_file(Path(args.export_lite), "--export-lite", {"--model": model})
    elif args.export_savedmodel:
        if same_path(args.export_savedmodel, model):
            raise DatasetError(f"--export-savedmodel {args.export_savedmodel} would overwrite --model {model}")


def report_path(args: argparse.Namespace) -> Path:
    """Where --evaluate or --audit writes its JSON report."""
    if args.report:
        return Path(args.report)
    return beside_model(Path(args.model), "evaluation.json" if args.evaluate else "audit.json")


def run(args: argparse.Namespace) -> int:
    """Run the mode the arguments ask for; training is the default."""
    if args.label:
        from captcha_reader.labelling import serve

        serve(args.label, named_model(args.model) if args.model else None, args.port, args.review)
        return 0
    model = Path(args.model)
    check_mode_paths(args)
    if args.evaluate:
        from captcha_reader.evaluation import evaluate_folder
        from captcha_reader.readers import open_reader

        evaluate_folder(open_reader(model), args.evaluate, report_path(args))
    elif args.audit:
        from captcha_reader.audit import audit_folder

        audit_folder(args.audit, args.settings, args.folds, report_path(args))
    elif args.export_lite:
        from captcha_reader.export import export_lite
        from captcha_reader.model import load_keras_reader

        export_lite(load_keras_reader(model), Path(args.export_lite), int8=args.int8)
    elif args.export_savedmodel:
        from captcha_reader.export import export_savedmodel
        from captcha_reader.model import load_keras_reader

        export_savedmodel(load_keras_reader(model), Path(args.export_savedmodel))
    elif args.unlabelled is not None:
        from captcha_reader.pseudo_labels import train_with_unlabelled  # imports TensorFlow, which takes seconds

        train_with_unlabelled(args.settings, args.unlabelled)
    else:
        from captcha_reader.training import train

        train(args.settings)
    return 0


def run_models(args: argparse.Namespace) -> list[Path]:
    """The models a training command writes: --model, and with --unlabelled its first run's model."""
    model = Path(args.model)
    return [model, labels_only_model(model)] if args.unlabelled else [model]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the script; errors become one line on stderr and exit status 1."""
    return quiet_when_output_closes(functools.partial(run_command, argv))


def run_command(argv: Sequence[str] | None) -> int:
    """Parse the flags and run their mode; a user error or Ctrl-C ends in one line."""
    args = parse_args(argv)
    try:
        return run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if mode_of(args) == "train" and any(map(has_backup, run_models(args))):
            print("interrupted: run the same command again to resume from the last finished epoch", file=sys.stderr)
        else:
            print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
