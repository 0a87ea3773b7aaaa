"""Training settings: one frozen object, resolved once from the command line (or built in Python).

`TrainingSettings` is what the user asked for; `plan_training` turns it, with the size of
the data, into the `TrainingPlan` that runs (batch size, epochs, patience, augmentation).
"""

import argparse
import math
from dataclasses import dataclass, fields
from typing import NoReturn

from captcha_reader.base import SettingError

DEFAULT_DATA_DIR = "captcha_images"
DEFAULT_MODEL = "model/ocr_captcha.keras"
# --init-from scratch: a new network, even for data the base model would start (training.starting_model).
SCRATCH = "scratch"
DEFAULT_IMG_HEIGHT = 48
DEFAULT_CAPACITY = 1  # the network's convolution filters: 16, 32 and 64 times this
MIN_AUTO_EPOCHS = 5
DEFAULT_PATIENCE = 10
DEFAULT_BATCH_SIZE = 32
DEFAULT_LEARNING_RATE = 2e-3
DEFAULT_SEED = 1337
DEFAULT_VAL_SPLIT = 0.1
# At least a tenth of the images must train.
MAX_VAL_SPLIT = 0.9
STRATEGIES = ("auto", "mirrored", "multiworker")
# Training is planned to see at least this many images (3,000 steps of 32; MAX_AUTO_EPOCHS caps it below
# 320), in at least MIN_AUTO_EPOCHS epochs: small datasets get more epochs, large ones fewer (more
# distinct images beat more passes: benchmarks/levers.md). Early stopping may end a run sooner.
MIN_TRAINING_IMAGES = 96_000
MAX_AUTO_EPOCHS = 300
# Below this many training images, unless settings say otherwise: augmentation on, and batches
# of SMALL_DATA_BATCH_SIZE, whose extra optimizer steps per epoch shorten the CTC loss plateau.
SMALL_DATA_BELOW = 2000
SMALL_DATA_BATCH_SIZE = 16
# Three poolings halve the height: a smaller input leaves the network no rows to read.
MIN_IMG_HEIGHT = 8
# Far beyond any captcha, and a bound on memory: a run holds its images decoded at this geometry.
MAX_IMG_HEIGHT = 256
MAX_IMG_WIDTH = 2048
# --unlabelled: a reading of an unlabelled image joins the labels of the second run when the first run's
# model is at least this sure of it (the probability of its path). Of 10,000 unlabelled `hard2` images, a
# model from 2,000 labels passed 66% (99.1% of them right), one from 300 labels 47% (96.6% right)
# (benchmarks/levers.md, "Unlabelled images").
PSEUDO_LABEL_CONFIDENCE = 0.95
# At most this many sure readings join the second run (a seeded sample when there are more): they are held
# in memory with the labels, and each one lengthens the second run's epochs. The measured gains came from
# 2,000 to 6,600 joining readings; more were not measured.
MAX_PSEUDO_LABELLED = 20_000
# Settings that do not change what a run computes: left out of the key that lets a run resume.
NOT_IN_RUN_KEY = ("model", "test_dir", "restart", "verbose")


@dataclass(frozen=True)
class TrainingSettings:
    """Everything that decides a training run; None means "decided from the data" (see plan_training).

    init_from is a model file to fine-tune, SCRATCH for a new network, or None: the base model for
    data with letters it knows, else a new network (training.starting_model).
    """

    data_dir: str = DEFAULT_DATA_DIR
    model: str = DEFAULT_MODEL
    init_from: str | None = None
    test_dir: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float = DEFAULT_LEARNING_RATE
    patience: int | None = None
    seed: int = DEFAULT_SEED
    val_split: float = DEFAULT_VAL_SPLIT
    img_height: int = DEFAULT_IMG_HEIGHT
    img_width: int | None = None
    capacity: int | None = None
    augment: bool | None = None
    strategy: str = "auto"
    restart: bool = False
    verbose: int = 1

    def __post_init__(self) -> None:
        """Refuse settings no run can use, with the setting's name."""
        for name in ("epochs", "batch_size", "patience", "img_width", "capacity"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise SettingError(name, f"must be at least 1, got {value}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise SettingError("learning_rate", f"must be a number above 0, got {self.learning_rate}")
        if self.seed < 0:
            raise SettingError("seed", f"must be at least 0, got {self.seed}")
        if not 0 <= self.val_split <= MAX_VAL_SPLIT:
            raise SettingError("val_split", f"must be between 0 and {MAX_VAL_SPLIT}, got {self.val_split}")
        if not MIN_IMG_HEIGHT <= self.img_height <= MAX_IMG_HEIGHT:
            raise SettingError("img_height", f"must be {MIN_IMG_HEIGHT} to {MAX_IMG_HEIGHT}, got {self.img_height}")
        if self.img_width is not None and self.img_width > MAX_IMG_WIDTH:
            raise SettingError("img_width", f"must be at most {MAX_IMG_WIDTH}, got {self.img_width}")
        if self.strategy not in STRATEGIES:
            raise SettingError("strategy", f"must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")

    def run_fields(self) -> dict:
        """The settings that change what a run computes, for the key that lets it resume."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in NOT_IN_RUN_KEY}


@dataclass(frozen=True)
class TrainingPlan:
    """What a run does, resolved from the settings and the number of training images."""

    batch_size: int
    epochs: int
    patience: int
    augment: bool


def epochs_to_see(images: int, n_train: int) -> int:
    """Epochs over `n_train` images that show at least `images` of them, from MIN_AUTO_EPOCHS to MAX_AUTO_EPOCHS."""
    return max(MIN_AUTO_EPOCHS, min(MAX_AUTO_EPOCHS, math.ceil(images / max(1, n_train))))


def plan_training(settings: TrainingSettings, n_train: int) -> TrainingPlan:
    """Batch size, epochs, patience and augmentation from the settings and the data size.

    CTC training first sits on a loss plateau that only optimizer steps end. Every run gets as many
    epochs as make MIN_TRAINING_IMAGES images seen, at least MIN_AUTO_EPOCHS; small datasets also get
    batches of 16 (twice the steps per epoch) and augmentation against overfitting.
    Early stopping watches the validation loss and waits half the planned epochs, at least
    DEFAULT_PATIENCE: a quarter stopped runs that still improved (benchmarks/levers.md).
    """
    small = n_train < SMALL_DATA_BELOW
    epochs = settings.epochs or epochs_to_see(MIN_TRAINING_IMAGES, n_train)
    return TrainingPlan(
        batch_size=settings.batch_size or (SMALL_DATA_BATCH_SIZE if small else DEFAULT_BATCH_SIZE),
        epochs=epochs,
        patience=settings.patience or max(DEFAULT_PATIENCE, epochs // 2),
        augment=small if settings.augment is None else settings.augment,
    )


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line, as every user error is (`--help` still shows the usage)."""

    def error(self, message: str) -> NoReturn:
        """Print `prog: error: message` on stderr and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def port_number(text: str) -> int:
    """A TCP port from the command line."""
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (1-65535)")
    return port
