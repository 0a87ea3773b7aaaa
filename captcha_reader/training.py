"""Training: the recipe that turns a labelled folder into a saved reader.

    train(TrainingSettings(data_dir="captcha_images"))   # what `python ocr_captcha.py` runs

It reads top to bottom as the run does: data (decoded once, split by a seeded permutation),
the tf.data pipeline and its augmentation, the optimizer and loss, fitting with early
stopping and resumable backups, and saving the model with everything a reader needs.
"""

import contextlib
import hashlib
import json
import math
import shutil
import string
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import numpy as np

from captcha_reader import distributed, records
from captcha_reader.base import DatasetError, ModelSpec, UserError, counted
from captcha_reader.data import (
    encode_labels,
    infer_spec,
    labelled_items,
    list_bad_files,
    load_images,
    load_training_images,
    spec_for_data,
    split_indices,
)
from captcha_reader.decoding import Reading, score
from captcha_reader.evaluation import evaluate_folder
from captcha_reader.files import (
    beside_model,
    check_output_file,
    check_output_folder,
    check_writable,
    exclusive_lock,
    has_backup,
    scratch_dir,
    write_atomically,
    write_json,
)
from captcha_reader.images import stack_images
from captcha_reader.labels import check_time_steps, decode_indices
from captcha_reader.metrics import CharacterErrorRate, SequenceAccuracy
from captcha_reader.model import (
    KerasReader,
    build_model,
    extend_model,
    load_keras_reader,
    model_info,
)
from captcha_reader.reading import BASE_CAPACITY, BASE_CHARSET, BASE_HEIGHT, BASE_MODEL, existing_model
from captcha_reader.settings import (
    SCRATCH,
    TrainingPlan,
    TrainingSettings,
    plan_training,
)
from captcha_reader.tf_import import keras, tf
from captcha_reader.verdict import judge_validation

layers = keras.layers
# What a run writes beside the model, each named after it (`ocr_captcha.split.json`), and `<name>.prev.keras`,
# the model it replaces.
SPLIT_RECORD, TRAINING_LOG = "split.json", "training_log.csv"
RUN_OUTPUTS = (SPLIT_RECORD, TRAINING_LOG, "bad_files.txt", "test_report.json", "learning_curve.png",
               "model_structure.png", "sample_predictions.png")
# Shuffle all training images up to this many (a buffer of images in memory); a larger set, or a
# stream of shards, is shuffled within a window of this size.
MAX_SHUFFLE_BUFFER = 20_000


# ---------------------------------------------------------------------------
# Data: a folder decoded into memory, or TFRecord shards streamed
# ---------------------------------------------------------------------------


class TrainingData(NamedTuple):
    """What training needs from a data folder, whatever its format."""

    spec: ModelSpec
    train_elements: tf.data.Dataset  # unbatched (image, encoded label)
    n_train: int
    val_images: np.ndarray
    val_labels: list[str]
    split: dict  # recorded beside the model as NAME.split.json
    fingerprint: list[str]  # identifies the data, for the backup folder's key


class PseudoLabels(NamedTuple):
    """Unlabelled images with a model's readings as their labels, for a second run (captcha_reader.pseudo_labels)."""

    folder: str
    min_confidence: float  # the least confidence of a reading that joined
    readings: list[tuple[Path, str]]


def data_spec(settings: TrainingSettings, items: list[tuple[Path, str]] | None) -> ModelSpec:
    """The charset, label lengths and geometry the data asks for: a folder's `items`, or shards' (None)."""
    if items is None:
        return records.spec_for(records.read_meta(settings.data_dir), settings.img_height, settings.img_width)
    return infer_spec(items, settings.img_height, settings.img_width)


def starting_model(settings: TrainingSettings, found: ModelSpec) -> str | None:
    """The model a run fine-tunes: the one asked for; else the base model for data with letters it knows.

    From the base model, hard captchas read 69% instead of 51% from 2,000 labels and a held-out style
    57% instead of 16%; digits alone read as well from scratch (benchmarks/levers.md, "Where to start").
    Asking for another geometry or capacity means a new network, as does `--init-from scratch`.
    """
    if settings.init_from is not None:
        return None if settings.init_from == SCRATCH else settings.init_from
    characters = set(found.charset)
    if characters <= set(string.digits):
        return None
    own_network = (settings.capacity not in (None, BASE_CAPACITY) or settings.img_width
                   or settings.img_height != BASE_HEIGHT)
    reason = ("it does not know every character of this data" if not characters <= set(BASE_CHARSET)
              else "this run asks for its own geometry or capacity" if own_network
              else f"it is not installed at {BASE_MODEL}" if not BASE_MODEL.is_file() else None)
    if reason:
        print(f"starting a new network, not the base model: {reason}")
        return None
    print(f"starting from the base model ({BASE_MODEL.name}): it knows every character of this data; "
          f"--init-from {SCRATCH} trains a new network")
    return str(BASE_MODEL)


def starting_point(settings: TrainingSettings, found: ModelSpec) -> tuple[str | None, keras.Model | None, ModelSpec]:
    """Where a run starts for data of spec `found`: the starting model's path and network (None: a new
    network), and the spec to train (fine-tuning keeps the starting model's height and capacity)."""
    start = starting_model(settings, found)
    base = load_keras_reader(start).model if start else None
    return start, base, spec_for_data(found, model_info(base).spec if base is not None else None, settings.capacity)


def network_for(spec: ModelSpec, base: keras.Model | None) -> keras.Model:
    """A new network for `spec`, or one that starts from `base`'s weights."""
    return build_model(spec) if base is None else extend_model(base, spec)


def describe_data(where: str, spec: ModelSpec) -> None:
    """Print how many images a run trains on and what they ask of the network."""
    print(f"{where}; charset {spec.charset!r} ({len(spec.charset)}), labels of {spec.min_label_length} to "
          f"{spec.max_label_length} characters; input {spec.height}x{spec.width}, {spec.time_steps} time steps")


def folder_training_data(settings: TrainingSettings, spec: ModelSpec, items: list[tuple[Path, str]],
                         pseudo_labels: PseudoLabels | None = None) -> TrainingData:
    """A folder's labelled images (`items`), decoded into memory and split by a seeded permutation.

    `pseudo_labels` images (with a model's readings as labels) join the training part only:
    validation stays on labels a person gave.
    """
    describe_data(f"{len(items)} images in {settings.data_dir}", spec)
    data = load_training_images(items, spec, settings.data_dir)
    list_bad_files(data.bad_files, beside_model(Path(settings.model), "bad_files.txt"))
    train_idx, val_idx = split_indices(len(data.labels), settings.val_split, settings.seed)
    encoded = encode_labels(data.labels, spec)
    train_images, train_encoded = data.images[train_idx], encoded[train_idx]
    fingerprint = item_lines(items)
    split = {"data_dir": str(settings.data_dir), "seed": settings.seed, "val_split": settings.val_split,
             "labels_digest": digest_of(fingerprint),
             "train": [data.paths[i].name for i in train_idx], "validation": [data.paths[i].name for i in val_idx]}
    if pseudo_labels is not None:
        extra = load_images(pseudo_labels.readings, spec)  # read once already: only a file changed since fails
        if extra.bad_files:
            print(f"{len(extra.bad_files)} of the sure readings' images can no longer be read and are left out")
        train_images = np.concatenate([train_images, extra.images])
        train_encoded = np.concatenate([train_encoded, encode_labels(extra.labels, spec)])
        files = {path.name: label for path, label in zip(extra.paths, extra.labels)}
        split["pseudo_labelled"] = {"folder": pseudo_labels.folder, "min_confidence": pseudo_labels.min_confidence,
                                    "files": files}
        fingerprint += [f"unlabelled\t{name}\t{label}" for name, label in files.items()]
    return TrainingData(spec, in_memory(train_images, train_encoded), len(train_images), data.images[val_idx],
                        [data.labels[i] for i in val_idx], split, fingerprint)


def item_lines(items: list[tuple[Path, str]]) -> list[str]:
    """Each labelled image's name, label and size: what identifies a folder's labels."""
    return [f"{path.name}\t{label}\t{path.stat().st_size}" for path, label in items]


def digest_of(lines: list[str]) -> str:
    """A short hash of some lines of text."""
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def trained_on(model_path: Path, items: list[tuple[Path, str]]) -> bool:
    """True when the model exists and its NAME.split.json says it was trained on exactly these labelled images."""
    split_path = beside_model(model_path, SPLIT_RECORD)
    if not (model_path.is_file() and split_path.is_file()):
        return False
    try:
        recorded = json.loads(split_path.read_text()).get("labels_digest")
    except (OSError, ValueError, AttributeError):
        return False
    return recorded == digest_of(item_lines(items))


def shard_training_data(settings: TrainingSettings, spec: ModelSpec) -> TrainingData:
    """TFRecord shards made by tools/pack_tfrecords.py: training streams, validation is held in memory."""
    meta = records.read_meta(settings.data_dir)
    check_time_steps([meta["most_time_steps_label"]], spec)
    describe_data(f"{meta['count']} images in {meta['shards']} shards in {settings.data_dir}", spec)
    examples = records.examples(settings.data_dir, spec)

    def held_out(image: tf.Tensor, label: tf.Tensor, path: tf.Tensor) -> tf.Tensor:
        """True for the examples of the validation set."""
        return records.in_validation(path, settings.val_split, settings.seed)

    # One pass over every record before training: a record that cannot be used stops the run now.
    val_images, val_labels, val_names, n_records = [], [], [], 0
    try:
        for image, label, path, validation in examples.map(lambda *e: (*e, held_out(*e))):
            n_records += 1
            if validation:
                val_images.append(image.numpy())
                val_labels.append(decode_indices(label.numpy(), spec.charset))
                val_names.append(path.numpy().decode("utf-8", "backslashreplace"))
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as error:
        reason = error.message.split("\n")[0].split("\t [[")[0][:300]
        raise DatasetError(f"{settings.data_dir}: a record cannot be used ({reason})") from None
    n_train = n_records - len(val_names)
    train_elements = examples.filter(lambda *e: not held_out(*e)).map(lambda image, label, path: (image, label))
    train_elements = train_elements.apply(tf.data.experimental.assert_cardinality(n_train))  # for the progress bar
    split = {"data_dir": str(settings.data_dir), "seed": settings.seed, "val_split": settings.val_split,
             "rule": "validation = files whose hash of '<seed>/<path>' falls in the first val_split of 10,000 buckets",
             "validation": val_names}
    images = stack_images(val_images, spec.height, spec.width)
    return TrainingData(spec, train_elements, n_train, images, val_labels, split,
                        [json.dumps(meta, sort_keys=True)])


# ---------------------------------------------------------------------------
# The input pipeline: shuffle every epoch, batch, augment small datasets, prefetch
# ---------------------------------------------------------------------------


def augmentation(seed: int) -> keras.Sequential:
    """Small random distortions that a captcha can take without changing its text."""
    fill = {"fill_mode": "constant", "fill_value": 1.0}  # new pixels are background white
    return keras.Sequential([
        layers.RandomRotation(0.012, seed=seed, **fill),  # up to about 4 degrees
        layers.RandomTranslation(0.08, 0.03, seed=seed, **fill),
        layers.RandomZoom((-0.08, 0.08), seed=seed, **fill),
        layers.RandomContrast(0.4, value_range=(0, 1), seed=seed),
        layers.RandomGaussianBlur(0.5, kernel_size=3, sigma=(0.1, 0.8), value_range=(0, 1), seed=seed),
        layers.GaussianNoise(0.03, seed=seed),
    ], name="augmentation")


def batched(elements: tf.data.Dataset, batch_size: int, shuffle_seed: int | None = None, augment: bool = False,
            *, shuffle_buffer: int) -> tf.data.Dataset:
    """Batch (image, label) elements; with a seed reshuffle every epoch, and optionally augment (training)."""
    if shuffle_seed is not None:
        elements = elements.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = elements.batch(batch_size)
    if augment:
        distort = augmentation(shuffle_seed or 0)

        def augment_batch(batch: tf.Tensor, batch_labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            """Distort one batch of images, keeping pixels in [0, 1]."""
            distorted = distort(batch[..., None], training=True)[..., 0]
            return tf.clip_by_value(distorted, 0.0, 1.0), batch_labels

        # One batch at a time: parallel calls would race for the layers' random state, and the
        # same seed would give other distortions, and another model, on every run. Prefetch
        # still overlaps this with training, which costs no measurable time on 2 cores.
        dataset = dataset.map(augment_batch)
    return dataset.prefetch(tf.data.AUTOTUNE)


def in_memory(images: np.ndarray, labels: np.ndarray) -> tf.data.Dataset:
    """Decoded images and their encoded labels, held in memory, as the unbatched (image, label) pairs of tf.data."""
    return tf.data.Dataset.from_tensor_slices((images, labels)).cache()


def make_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, shuffle_seed: int | None = None,
                 augment: bool = False) -> tf.data.Dataset:
    """A batched tf.data pipeline over decoded images held in memory."""
    return batched(in_memory(images, labels), batch_size, shuffle_seed, augment, shuffle_buffer=max(1, len(images)))


# ---------------------------------------------------------------------------
# Optimizer, loss and fitting
# ---------------------------------------------------------------------------


def compile_model(model: keras.Model, learning_rate: float, total_steps: int, steps_per_epoch: int,
                  average_weights: bool = True) -> None:
    """Adam (warm-up, cosine decay, weight averaging), CTC loss on logits (blank 0), the reading metrics."""
    # A short warm-up (5% of the steps, at most one epoch): small datasets train for many short
    # epochs, and 5% of all their steps would hold the learning rate low for the first five.
    warmup = max(1, min(total_steps // 20, steps_per_epoch))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=learning_rate / 10,
        decay_steps=max(1, total_steps - warmup),
        alpha=0.01,
        warmup_target=learning_rate,
        warmup_steps=warmup,
    )
    # Weight averaging: validation, early stopping and the saved model use a moving average of the
    # weights over about the last quarter of an epoch. It reads more fresh captchas right (99.9%
    # against 99.6% on the shipped family), and a window this short barely delays the CTC loss
    # plateau's end on small datasets (benchmarks/levers.md). The multi-worker loop has no
    # callback to swap the average in, so it trains without one.
    ema_momentum = min(0.99, max(0.9, 1 - 4 / steps_per_epoch))
    model.compile(
        optimizer=keras.optimizers.Adam(schedule, clipnorm=1.0, use_ema=average_weights, ema_momentum=ema_momentum),
        loss=keras.losses.CTC(),
        metrics=[SequenceAccuracy(), CharacterErrorRate()],
        jit_compile=False,
    )


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that survives a kill while it saves: the previous backup, else a fresh start with a warning.

    With double_checkpoint=True Keras falls back to the previous backup only when the latest cannot
    be opened (OSError). A kill can also leave a file cut short that opens and lacks weights
    (ValueError), and a kill during the very first save leaves no previous backup at all.
    """

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Restore the last finished epoch, else the one before it, else start from scratch."""
        initial_weights = self.model.get_weights()
        try:
            super().on_train_begin(logs)
        except (OSError, ValueError):
            if not self.restored_previous():
                self.start_over(initial_weights)

    def restored_previous(self) -> bool:
        """Put the previous backup in place of the unreadable latest one and load it; False if that fails too."""
        if not Path(self._prev_weights_path).is_file():
            return False
        shutil.copyfile(self._prev_weights_path, self._weights_path)
        if Path(self._prev_training_metadata_path).is_file():
            shutil.copyfile(self._prev_training_metadata_path, self._training_metadata_path)
        try:
            self._load_model()
        except (OSError, ValueError):
            return False
        print(f"warning: the last backup in {self.backup_dir} was unreadable (killed while saving?); "
              "resuming from the one before it", file=sys.stderr)
        return True

    def start_over(self, initial_weights: list[np.ndarray]) -> None:
        """Drop the unreadable backup and train from the run's first weights, with a fresh optimizer."""
        print(f"warning: the backup in {self.backup_dir} is unreadable (killed while saving?); "
              "starting over", file=sys.stderr)
        shutil.rmtree(self.backup_dir, ignore_errors=True)
        self.model.set_weights(initial_weights)
        for variable in self.model.optimizer.variables:
            variable.assign(keras.ops.zeros_like(variable))


def describe_plan(plan: TrainingPlan, settings: TrainingSettings, n_train: int, global_batch: int,
                  steps_per_epoch: int) -> None:
    """Print what the run will do, and which of it the settings chose."""
    print(f"augmentation {'on' if plan.augment else 'off'} ({n_train} training images"
          f"{'' if settings.augment is None else ', chosen by setting'}); global batch {global_batch}")
    if settings.epochs is None:
        if plan.patience < plan.epochs:
            print(f"training for up to {plan.epochs} epochs of {steps_per_epoch} steps (patience {plan.patience})")
        else:
            print(f"training for {plan.epochs} epochs of {steps_per_epoch} steps (early stopping's patience of"
                  f" {plan.patience} cannot end it sooner; the best epoch's weights are kept)")


def fit(model: keras.Model, train_elements: tf.data.Dataset, n_train: int, val_images: np.ndarray,
        val_encoded: np.ndarray, settings: TrainingSettings, work: Path, extra_callbacks: Sequence = (),
        strategy: tf.distribute.Strategy | None = None) -> dict:
    """Compile and fit with early stopping, a CSV log and resumable backups in `work`; returns the history.

    `train_elements` holds unbatched (image, label) pairs; the validation set is held in memory.
    """
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    plan = plan_training(settings, n_train)
    global_batch = plan.batch_size * replicas
    steps_per_epoch = int(np.ceil(n_train / global_batch))
    describe_plan(plan, settings, n_train, global_batch, steps_per_epoch)
    train_ds = batched(train_elements, global_batch, settings.seed, plan.augment,
                       shuffle_buffer=min(max(1, n_train), MAX_SHUFFLE_BUFFER))
    val_ds = make_dataset(val_images, val_encoded, global_batch) if len(val_images) else None
    multiworker = distributed.is_multiworker(strategy)
    with strategy.scope():
        compile_model(model, settings.learning_rate, plan.epochs * steps_per_epoch, steps_per_epoch,
                      average_weights=not multiworker)
    monitor = "val_loss" if val_ds is not None else "loss"
    both_loops = [keras.callbacks.EarlyStopping(monitor=monitor, patience=plan.patience, restore_best_weights=True)]
    if distributed.is_chief(strategy):
        both_loops.append(keras.callbacks.CSVLogger(str(work / TRAINING_LOG), append=True))
    if multiworker:
        return distributed.fit_multiworker(strategy, model, train_ds, val_ds, plan.epochs, global_batch,
                                           settings.verbose, both_loops)
    callbacks = [
        ResumableBackup(str(work / "backup"), double_checkpoint=True),  # the raw weights
        # From here on each epoch's end sees the averaged weights: early stopping keeps the best of those.
        keras.callbacks.SwapEMAWeights(swap_on_epoch=True),
        *both_loops,
        keras.callbacks.TerminateOnNaN(),
        *extra_callbacks,
    ]
    return model.fit(train_ds, validation_data=val_ds, epochs=plan.epochs, callbacks=callbacks,
                     shuffle=False, verbose=settings.verbose).history  # the dataset shuffles itself


# ---------------------------------------------------------------------------
# A run: its scratch folder, its lock, its key; saving what it made
# ---------------------------------------------------------------------------


def run_key(fingerprint: list[str], settings: TrainingSettings, spec: ModelSpec, start: str | None) -> str:
    """A short hash of the data and every setting that changes a run: a backup is only restored into its own run."""
    run = {**settings.run_fields(), "spec": spec.to_dict()}
    if start:
        run["init_from_file"] = [Path(start).stat().st_size, Path(start).stat().st_mtime_ns]
    return digest_of([*fingerprint, json.dumps(run, sort_keys=True)])


def is_finite_run(model: keras.Model, history: dict, scores: list[float]) -> bool:
    """True when every loss of the run, every weight and every score is a finite number."""
    losses = [value for key in ("loss", "val_loss") for value in history.get(key, [])]
    return (bool(np.isfinite(losses + scores).all())
            and all(np.isfinite(weights).all() for weights in model.get_weights()))


def previous_model(path: Path) -> Path:
    """Where saving a model keeps the one it replaces: `<name>.prev.keras`."""
    return beside_model(path, "prev.keras")


def reads_better(path: Path, seq_acc: float) -> bool:
    """True when a usable model at `path` reads better than `seq_acc`, or records no score to compare: keep it."""
    if not path.is_file():
        return False
    try:
        score = load_keras_reader(path).validation.get("seq_acc")
    except UserError:
        return False  # not a model that anything can read
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        return True  # unscored (no validation images, an old NaN, or a tampered value): never traded for nothing
    return score > seq_acc


def save_model(model: keras.Model, path: Path) -> None:
    """Replace the model file atomically, keeping the previous one as `<name>.prev.keras`."""
    if path.exists():
        write_atomically(previous_model(path), lambda tmp: shutil.copy2(path, tmp))
    # A fresh functional model over the same layers: saved without optimizer state or compile settings.
    inference_model = keras.Model(model.inputs, model.outputs, name=model.name)
    write_atomically(path, lambda tmp: inference_model.save(tmp))


def train(settings: TrainingSettings) -> KerasReader | None:
    """Train on a labelled folder (or TFRecord shards) and save the model, its split, log and plots.

    Returns a reader of the new model on the process that saved it, None on other workers.
    """
    strategy = distributed.make_strategy(settings.strategy)  # before any other TensorFlow work
    if not distributed.is_chief(strategy):
        return train_and_save(settings, strategy, chief=False, items=list_data(settings))
    check_run_paths(settings)
    with locked_run(Path(settings.model)):
        return train_and_save(settings, strategy, chief=True, items=list_data(settings))


def list_data(settings: TrainingSettings) -> list[tuple[Path, str]] | None:
    """A folder's labelled images, listed once (the labelling page may add labels while a run starts); None for shards."""
    return None if records.is_record_folder(settings.data_dir) else labelled_items(settings.data_dir)


@contextlib.contextmanager
def locked_run(model_path: Path) -> Iterator[None]:
    """Hold the run lock of a model; on leaving, drop its scratch folder unless it holds a backup to resume."""
    # Two runs writing one model would corrupt each other's backups: the second one stops here.
    busy = (f"{model_path}: another training run is writing this model; wait for it to finish "
            "or give this one another --model")
    with exclusive_lock(scratch_dir(model_path) / "lock", busy):
        try:
            yield
        finally:
            if not has_backup(model_path):  # a run that failed before its first epoch ended leaves nothing
                shutil.rmtree(scratch_dir(model_path), ignore_errors=True)


def check_run_paths(settings: TrainingSettings) -> None:
    """Check every path a run reads or writes before any work: no output may be lost, overwrite an input or become data."""
    model_path = Path(settings.model)
    if model_path.is_dir():
        raise DatasetError(f"--model {model_path} is a folder; give a file path ending in .keras")
    if model_path.suffix != ".keras":
        raise DatasetError(f"--model {model_path} must end in .keras, the only format Keras saves a model in")
    check_writable(model_path.parent)
    check_output_folder(model_path.parent, "the plots beside the model",
                        {"--data-dir": settings.data_dir, "--test-dir": settings.test_dir})
    outputs = [model_path, *(beside_model(model_path, name) for name in RUN_OUTPUTS),
               previous_model(model_path)]
    for output in outputs:
        check_output_file(output, "the run's output", {"--init-from": settings.init_from, "the base model": BASE_MODEL})
    if settings.init_from not in (None, SCRATCH):
        existing_model(settings.init_from)
    if settings.test_dir:
        labelled_items(settings.test_dir, warn_of_absent=False)  # a missing or empty test folder stops the run now


def print_charset_change(old: str, new: str) -> None:
    """Say which characters of a model extended from charset `old` to `new` keep their weights, start fresh or go."""
    added = "".join(char for char in new if char not in old)
    dropped = "".join(char for char in old if char not in new)
    if added or dropped:
        print(f"output layer: {len(new) - len(added)} characters keep their weights"
              + (f", {len(added)} new ones start fresh {added!r}" if added else "")
              + (f", {len(dropped)} the data never uses are dropped" if dropped else ""))


def train_and_save(settings: TrainingSettings, strategy: tf.distribute.Strategy, chief: bool,
                   items: list[tuple[Path, str]] | None, pseudo_labels: PseudoLabels | None = None
                   ) -> KerasReader | None:
    """Build or extend the model, fit it and (on the chief) save it with everything beside it.

    `items` is the labelled folder as `list_data` listed it (None: shards); the images of
    `pseudo_labels` join its training images (see folder_training_data).
    """
    keras.utils.set_random_seed(settings.seed)
    model, data, start = model_and_data(settings, strategy, items, pseudo_labels)
    work = run_folder(settings, run_key(data.fingerprint, settings, data.spec, start), chief)
    started = time.monotonic()
    history = fit(model, data.train_elements, data.n_train, data.val_images, encode_labels(data.val_labels, data.spec),
                  settings, work, strategy=strategy)
    seconds = time.monotonic() - started
    if not chief:
        shutil.rmtree(work, ignore_errors=True)
        print(f"worker finished after {seconds:.0f} s; the chief writes the model")
        return None
    reader, val_readings = judged_reader(model, data, history, settings, seconds, work)
    save_run(reader, data, history, val_readings, settings, start, work)
    if settings.test_dir:
        evaluate_folder(reader, settings.test_dir, beside_model(Path(settings.model), "test_report.json"))
    return reader


def model_and_data(settings: TrainingSettings, strategy: tf.distribute.Strategy, items: list[tuple[Path, str]] | None,
                   pseudo_labels: PseudoLabels | None) -> tuple[keras.Model, TrainingData, str | None]:
    """The network to train (new, or extended from the starting model), its data, and the starting model's path."""
    start, base, spec = starting_point(settings, data_spec(settings, items))
    data = (shard_training_data(settings, spec) if items is None
            else folder_training_data(settings, spec, items, pseudo_labels))
    with strategy.scope():
        model = network_for(data.spec, base)
    if base is not None:
        print_charset_change(model_info(base).spec.charset, data.spec.charset)
    print(f"training on {data.n_train} images, validating on {len(data.val_labels)} (seed {settings.seed}); "
          f"{distributed.task_description(strategy)}, {counted(strategy.num_replicas_in_sync, 'replica')}")
    return model, data, start


def run_folder(settings: TrainingSettings, key: str, chief: bool) -> Path:
    """Where the run keeps its checkpoints and log: resumed if it exists, unless --restart."""
    # Keyed to the data and settings: re-running the same command resumes there, and a different
    # run never restores it. Workers other than the chief keep theirs in a temporary folder.
    work = scratch_dir(Path(settings.model)) / f"run-{key}" if chief else Path(tempfile.mkdtemp())
    if settings.restart:
        shutil.rmtree(work, ignore_errors=True)
    if (work / "backup").exists():
        print(f"resuming from the last finished epoch in {work} (--restart to start over)")
    work.mkdir(parents=True, exist_ok=True)
    return work


def judged_reader(model: keras.Model, data: TrainingData, history: dict, settings: TrainingSettings,
                  seconds: float, work: Path) -> tuple[KerasReader, list[Reading]]:
    """The trained model's reader with its validation scores and readings; refuses a run not worth saving."""
    model_path = Path(settings.model)
    reader = KerasReader(model)
    readings = reader.read_arrays(data.val_images)
    seq_acc, cer = score(data.val_labels, [r.text for r in readings])
    if not is_finite_run(model, history, [seq_acc, cer] if data.val_labels else []):
        shutil.rmtree(work, ignore_errors=True)  # its backup holds the same numbers: never resume from it
        raise DatasetError("the loss, the weights or the validation scores became NaN or infinite (not finite);"
                           f" {model_path} was left as it was; try a lower --learning-rate")
    scored = bool(data.val_labels)  # with no validation images there is no score: null in the model, not NaN
    model_info(model).validation = reader.validation = {"seq_acc": seq_acc if scored else None,
                                                        "cer": cer if scored else None, "n": len(data.val_labels)}
    if scored:
        print(f"validation: sequence accuracy {seq_acc:.4f}, character error rate {cer:.4f} "
              f"({len(data.val_labels)} images, {seconds:.0f} s of training)")
    verdict = judge_validation(data.val_labels, [r.text for r in readings], data.val_images, data.spec)
    print("\n".join(verdict.lines))
    displaced = (model_path, previous_model(model_path))  # saving replaces the first and the second goes
    if verdict.learned_nothing and any(reads_better(path, seq_acc) for path in displaced):
        shutil.rmtree(scratch_dir(model_path), ignore_errors=True)  # nothing worth resuming
        raise DatasetError(f"training learned nothing, so {model_path} and its .prev.keras were left as they were"
                           " (one of them reads better or records no score); see the likely causes above")
    return reader, readings


def save_run(reader: KerasReader, data: TrainingData, history: dict, val_readings: list[Reading],
             settings: TrainingSettings, start: str | None, work: Path) -> None:
    """Save the model, its training log, split and plots beside it, and drop the run's scratch folder."""
    model_path = Path(settings.model)
    save_model(reader.model, model_path)
    shutil.move(str(work / TRAINING_LOG), beside_model(model_path, TRAINING_LOG))
    shutil.rmtree(scratch_dir(model_path), ignore_errors=True)
    write_json(beside_model(model_path, SPLIT_RECORD), {**data.split, "init_from": start})
    from captcha_reader import plots  # matplotlib is only needed once training is done

    plots.save_training_plots(model_path, history, reader.model, data.val_images, data.val_labels, val_readings)
    print(f"saved {model_path} (its split, log and plots beside it as {model_path.stem}.*)")
