"""OCR model for reading captchas: a CNN + BiLSTM network trained with CTC loss.

    python ocr_captcha.py                          # train on captcha_images/, save model/ocr_captcha.keras
    python ocr_captcha.py --data-dir DIR --epochs 40

Every image in the data folder is a captcha whose file name is its label
(`0427.png`, or `0427_13.png` when labels repeat). The script reads the images,
infers the charset and the longest label, trains the network with CTC loss, and
saves one `.keras` file that carries everything needed to read new captchas
(`predict_example.py` shows how).

The file reads top to bottom: data, model, training, inference. The reading metrics shown
every epoch (whole-code accuracy, character error rate) live in `ocr_metrics.py`.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

import ocr_core
from ocr_core import DatasetError, ImageReadError, ModelLoadError, ModelSpec

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
with ocr_core.silenced_stderr():  # TensorFlow's C++ start-up messages ignore TF_CPP_MIN_LOG_LEVEL
    import keras
    import tensorflow as tf
    from keras import layers

import ocr_distributed  # noqa: E402 - these import TensorFlow: after the quiet import above
import ocr_metrics  # noqa: E402
import ocr_records  # noqa: E402
import ocr_storage  # noqa: E402

DEFAULT_DATA_DIR = "captcha_images"
DEFAULT_MODEL = "model/ocr_captcha.keras"
DEFAULT_IMG_HEIGHT = 48
DEFAULT_EPOCHS = 15
DEFAULT_PATIENCE = 5
DEFAULT_BATCH_SIZE = 32
DEFAULT_LEARNING_RATE = 2e-3
# Training sees at least this many images (3,000 steps of 32): small datasets get more epochs.
MIN_TRAINING_IMAGES = 96_000
MAX_AUTO_EPOCHS = 300
# Below this many training images, unless flags say otherwise: augmentation on, and batches
# of SMALL_DATA_BATCH_SIZE, whose extra optimizer steps per epoch shorten the CTC loss plateau.
SMALL_DATA_BELOW = 2000
SMALL_DATA_BATCH_SIZE = 16
# The blank's starting logit, above every character's 0 (see build_model).
INITIAL_BLANK_LOGIT = 2.0


# ---------------------------------------------------------------------------
# Data: file names are labels; images are decoded once and held in memory
# ---------------------------------------------------------------------------


class LabelledImages(NamedTuple):
    """Decoded images with their labels and source files."""

    images: np.ndarray  # float32 (n, height, width) in [0, 1]
    labels: list[str]
    paths: list[Path]
    bad_files: list[str]  # "path: problem" for each file that could not be read


def infer_spec(items: list[tuple[Path, str]], height: int, width: int | None) -> ModelSpec:
    """Charset, longest label and geometry for a labelled folder (width from the median aspect ratio)."""
    labels = [label for _, label in items]
    if width is None:
        sizes = []
        for path, _ in items:
            try:
                sizes.append(ocr_core.image_size(path))
            except ImageReadError:
                continue  # reported once, when the images are decoded
        height, width = ocr_core.geometry_for(sizes or [(height, height)], height)
    return ModelSpec(
        charset=ocr_core.charset_from_labels(labels),
        height=height,
        width=width,
        max_label_length=max(len(label) for label in labels),
    )


def check_time_steps(labels: list[str], spec: ModelSpec) -> None:
    """Fail early when a label needs more CTC time steps than the geometry gives."""
    longest = max(labels, key=ocr_core.min_time_steps)
    needed = ocr_core.min_time_steps(longest)
    if needed > spec.time_steps:
        raise DatasetError(
            f"label {longest!r} needs {needed} CTC time steps but a {spec.width}-pixel-wide input gives"
            f" {spec.time_steps}; use --img-width {needed * ocr_core.WIDTH_PER_TIME_STEP} or more"
        )


def load_images(items: list[tuple[Path, str]], spec: ModelSpec) -> LabelledImages:
    """Decode every image with the shared reader, skipping (and listing) unreadable files."""

    def read(item: tuple[Path, str]):
        try:
            return ocr_core.read_image(item[0], spec.height, spec.width)
        except ImageReadError as error:
            return error

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(read, items))
    good = [(array, item) for array, item in zip(results, items) if isinstance(array, np.ndarray)]
    bad = [str(error) for error in results if isinstance(error, ImageReadError)]
    images = np.stack([array for array, _ in good]) if good else np.zeros((0, spec.height, spec.width), np.float32)
    return LabelledImages(images, [label for _, (_, label) in good], [path for _, (path, _) in good], bad)


def split_indices(count: int, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded, deterministic (train, validation) split of range(count)."""
    order = np.random.default_rng(seed).permutation(count)
    n_val = min(count - 1, max(1, round(count * val_split))) if val_split > 0 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def encode_labels(labels: list[str], spec: ModelSpec) -> np.ndarray:
    """Labels as an int32 (n, max_label_length) array of class indices, padded with the blank (0)."""
    encoded = np.zeros((len(labels), spec.max_label_length), dtype=np.int32)
    for row, label in enumerate(labels):
        indices = ocr_core.encode_label(label, spec.charset)
        encoded[row, : len(indices)] = indices
    return encoded


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
            shuffle_buffer: int = 20000) -> tf.data.Dataset:
    """Batch (image, label) elements; with a seed reshuffle every epoch, and optionally augment (training)."""
    if shuffle_seed is not None:
        elements = elements.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = elements.batch(batch_size)
    if augment:
        distort = augmentation(shuffle_seed or 0)

        def augment_batch(batch, batch_labels):
            distorted = distort(batch[..., None], training=True)[..., 0]
            return tf.clip_by_value(distorted, 0.0, 1.0), batch_labels

        # One batch at a time: parallel calls would race for the layers' random state, and the
        # same seed would give other distortions, and another model, on every run. Prefetch
        # still overlaps this with training, which costs no measurable time on 2 cores.
        dataset = dataset.map(augment_batch)
    return dataset.prefetch(tf.data.AUTOTUNE)


def make_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, shuffle_seed: int | None = None,
                 augment: bool = False) -> tf.data.Dataset:
    """A batched tf.data pipeline over decoded images held in memory."""
    elements = tf.data.Dataset.from_tensor_slices((images, labels)).cache()
    return batched(elements, batch_size, shuffle_seed, augment, shuffle_buffer=max(1, len(images)))


# ---------------------------------------------------------------------------
# Model: convolutions read columns of pixels, two BiLSTMs read the sequence
# ---------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="ocr_captcha")
class ModelInfo(layers.Layer):
    """Identity layer that stores the charset, geometry and validation scores in the saved model."""

    def __init__(self, charset, height, width, max_label_length, validation=None, format_version=1, **kwargs):
        super().__init__(**kwargs)
        self.spec = ModelSpec(charset, int(height), int(width), int(max_label_length))
        self.validation = dict(validation or {})
        self.format_version = int(format_version)

    def call(self, inputs):
        """Pass the logits through unchanged."""
        return inputs

    def get_config(self) -> dict:
        """Config that round-trips through the `.keras` file."""
        config = super().get_config()
        config.update(self.spec.to_dict(), validation=self.validation, format_version=self.format_version)
        return config


def build_model(spec: ModelSpec, batch_norm: bool = True) -> keras.Model:
    """The CRNN: three conv blocks with batch norm, two BiLSTMs, per-step logits (class 0 is the blank).

    Without `batch_norm` the convolutions carry a bias instead: the shape of a model whose
    normalisation has been folded into its convolutions for inference (`fold_batch_norm`).
    """
    inputs = keras.Input(shape=(spec.height, spec.width), name="image")
    x = layers.Reshape((spec.height, spec.width, 1), name="add_channel")(inputs)
    # Pool height more than width: the width becomes the CTC time axis (one step per 4 columns).
    for i, (filters, pool) in enumerate(((16, (2, 2)), (32, (2, 2)), (64, (2, 1))), start=1):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm, kernel_initializer="he_normal",
                          name=f"conv_{i}")(x)
        if batch_norm:
            # Momentum 0.9: the moving statistics that validation reads settle within tens of
            # steps; with Keras' 0.99 they lag for hundreds, and early validation scores are noise.
            x = layers.BatchNormalization(momentum=0.9, name=f"norm_{i}")(x)
        x = layers.ReLU(name=f"relu_{i}")(x)
        x = layers.MaxPooling2D(pool, name=f"pool_{i}")(x)
    x = layers.Permute((2, 1, 3), name="columns_first")(x)  # (batch, width, height, channels)
    x = layers.Reshape((spec.time_steps, -1), name="column_features")(x)  # one feature vector per time step
    x = layers.Dense(96, activation="relu", name="projection")(x)
    # Normalised column features leave the CTC loss plateau sooner (benchmarks/levers.md).
    x = layers.LayerNormalization(name="column_norm")(x)
    columns = layers.Dropout(0.2, name="dropout")(x)
    x = layers.Bidirectional(layers.LSTM(96, return_sequences=True, dropout=0.2), name="bilstm_1")(columns)
    x = layers.Bidirectional(layers.LSTM(64, return_sequences=True, dropout=0.2), name="bilstm_2")(x)
    # The logits also see each column's own features, not only the LSTMs' context: this direct
    # path lets CTC find the characters early instead of sitting on its loss plateau.
    x = layers.Concatenate(name="context_and_columns")([x, columns])
    logits_layer = layers.Dense(spec.num_classes, name="logits")
    outputs = ModelInfo(**spec.to_dict(), name="model_info")(logits_layer(x))
    # Most CTC steps emit the blank: a network that starts out saying so skips the first,
    # useless phase of training (benchmarks/levers.md).
    bias = np.zeros(spec.num_classes, dtype="float32")
    bias[ocr_core.BLANK_INDEX] = INITIAL_BLANK_LOGIT
    logits_layer.bias.assign(bias)
    return keras.Model(inputs, outputs, name="ocr_captcha")


def extend_model(base: keras.Model, spec: ModelSpec) -> keras.Model:
    """A new model for `spec` that starts from `base`'s weights; characters new to `spec` start fresh."""
    model = build_model(spec)
    missing = sorted({layer.name for layer in model.layers} - {layer.name for layer in base.layers})
    if missing:
        raise ModelLoadError(f"--init-from: the model lacks layers of this version's network ({', '.join(missing)});"
                             " it was made by another version: train from scratch instead")
    old_classes = model_info(base).spec.num_classes
    for layer in model.layers:
        old = base.get_layer(layer.name)
        if layer.name != "logits":
            layer.set_weights(old.get_weights())
            continue
        kernel, bias = layer.get_weights()
        old_kernel, old_bias = old.get_weights()
        kernel[:, :old_classes], bias[:old_classes] = old_kernel, old_bias
        layer.set_weights([kernel, bias])
    if spec.num_classes > old_classes:
        added = spec.charset[old_classes - 1:]
        print(f"extended the output layer with {len(added)} new characters {added!r}; the old ones keep their weights")
    return model


def fold_batch_norm(model: keras.Model) -> keras.Model:
    """An inference copy of `model` with each batch norm folded into the convolution before it.

    BatchNormalization at inference is a per-channel scale and shift, so it can be
    merged into the convolution's kernel and bias: same outputs, one pass less over
    every feature map. The saved model keeps its BatchNorm layers for fine-tuning.
    Models of another architecture are returned unchanged.
    """
    folded = build_model(model_info(model).spec, batch_norm=False)
    names = {layer.name for layer in model.layers}
    if not {f"norm_{i}" for i in (1, 2, 3)} <= names or not {layer.name for layer in folded.layers} <= names:
        return model  # another architecture, or nothing to fold: read with the model as it is
    for layer in folded.layers:
        source = model.get_layer(layer.name)
        if isinstance(layer, layers.Conv2D):
            norm = model.get_layer(layer.name.replace("conv_", "norm_"))
            gamma, beta, mean, variance = norm.get_weights()
            scale = gamma / np.sqrt(variance + norm.epsilon)
            layer.set_weights([source.get_weights()[0] * scale, beta - mean * scale])
        else:
            layer.set_weights(source.get_weights())
    model_info(folded).validation = model_info(model).validation
    return folded


def model_info(model: keras.Model) -> ModelInfo:
    """The ModelInfo layer of one of our models."""
    for layer in model.layers:
        if isinstance(layer, ModelInfo):
            return layer
    raise ModelLoadError(f"model {model.name!r} has no ModelInfo layer: not an ocr_captcha model")


# ---------------------------------------------------------------------------
# Training
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
        metrics=[ocr_metrics.SequenceAccuracy(), ocr_metrics.CharacterErrorRate()],
        jit_compile=False,
    )


def load_labelled_folder(data_dir: str, model_path: Path, spec: ModelSpec | None, args) -> tuple[list, ModelSpec, LabelledImages]:
    """List, check and decode a labelled folder; `spec` (from --init-from) fixes the geometry."""
    items = ocr_core.list_labelled_images(data_dir)
    if not items:
        raise DatasetError(f"{data_dir}: no images ({', '.join(ocr_core.IMAGE_EXTENSIONS)})")
    found = infer_spec(items, args.img_height, args.img_width)
    if spec is not None:
        extra = "".join(sorted(set(found.charset) - set(spec.charset)))
        spec = ModelSpec(spec.charset + extra, spec.height, spec.width,
                         max(spec.max_label_length, found.max_label_length))
    spec = spec or found
    check_time_steps([label for _, label in items], spec)
    print(f"{len(items)} images in {data_dir}; charset {spec.charset!r} ({len(spec.charset)}), "
          f"labels up to {spec.max_label_length}; input {spec.height}x{spec.width}, {spec.time_steps} time steps")
    data = load_images(items, spec)
    ocr_storage.report_bad_files(data.bad_files, len(items), data_dir, model_path)
    return items, spec, data


def training_plan(args: argparse.Namespace, n_train: int, replicas: int) -> argparse.Namespace:
    """args with augmentation, batch size, epochs and patience resolved from the number of training images.

    CTC training first sits on a loss plateau that only optimizer steps end. Small datasets
    therefore get batches of 16 (twice the steps per epoch) and as many epochs as make
    MIN_TRAINING_IMAGES images seen, at least DEFAULT_EPOCHS; and augmentation against overfitting.
    Their validation sets are small and their validation loss is noisy, so early stopping
    waits a quarter of the planned epochs (benchmarks/levers.md).
    """
    small = n_train < SMALL_DATA_BELOW
    augment = small if args.augment is None else args.augment
    batch_size = args.batch_size or (SMALL_DATA_BATCH_SIZE if small else DEFAULT_BATCH_SIZE)
    epochs = args.epochs or max(DEFAULT_EPOCHS, min(MAX_AUTO_EPOCHS, int(np.ceil(MIN_TRAINING_IMAGES / max(1, n_train)))))
    patience = args.patience or max(DEFAULT_PATIENCE, epochs // 4)
    print(f"augmentation {'on' if augment else 'off'} ({n_train} training images"
          f"{'' if args.augment is None else ', chosen by flag'}); global batch {batch_size * replicas}")
    if args.epochs is None:
        steps_per_epoch = int(np.ceil(n_train / (batch_size * replicas)))
        print(f"training for up to {epochs} epochs of {steps_per_epoch} steps (patience {patience})")
    return argparse.Namespace(**{**vars(args), "augment": augment, "batch_size": batch_size, "epochs": epochs,
                                 "patience": patience})


def fit(model: keras.Model, train_elements: tf.data.Dataset, n_train: int, val_images: np.ndarray,
        val_labels: np.ndarray, args, work: Path, extra_callbacks: Sequence = (),
        strategy: tf.distribute.Strategy | None = None) -> dict:
    """Compile and fit with early stopping, a CSV log and resumable backups in `work`; returns the history.

    `train_elements` holds unbatched (image, label) pairs; the validation set is held in memory.
    """
    strategy = strategy or tf.distribute.get_strategy()
    args = training_plan(args, n_train, strategy.num_replicas_in_sync)
    global_batch = args.batch_size * strategy.num_replicas_in_sync
    train_ds = batched(train_elements, global_batch, args.seed, args.augment,
                       shuffle_buffer=min(max(1, n_train), 20000))
    val_ds = make_dataset(val_images, val_labels, global_batch) if len(val_images) else None
    steps_per_epoch = int(np.ceil(n_train / global_batch))
    with strategy.scope():
        compile_model(model, args.learning_rate, args.epochs * steps_per_epoch, steps_per_epoch,
                      average_weights=not ocr_distributed.is_multiworker(strategy))
    if ocr_distributed.is_multiworker(strategy):
        log = work / "training_log.csv" if ocr_distributed.is_chief(strategy) else None
        return ocr_distributed.fit_multiworker(strategy, model, train_ds, val_ds, args, global_batch, log)
    monitor = "val_loss" if val_ds is not None else "loss"
    callbacks = [
        ocr_storage.ResumableBackup(str(work / "backup"), double_checkpoint=True),  # the raw weights
        # From here on each epoch's end sees the averaged weights: early stopping keeps the best of those.
        keras.callbacks.SwapEMAWeights(swap_on_epoch=True),
        keras.callbacks.EarlyStopping(monitor=monitor, patience=args.patience, restore_best_weights=True),
        keras.callbacks.CSVLogger(str(work / "training_log.csv"), append=True),
        *extra_callbacks,
    ]
    return model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, callbacks=callbacks,
                     shuffle=False, verbose=args.verbose).history  # the dataset shuffles itself


class TrainingData(NamedTuple):
    """What training needs from a data folder, whatever its format."""

    spec: ModelSpec
    train_elements: tf.data.Dataset  # unbatched (image, encoded label)
    n_train: int
    val_images: np.ndarray
    val_labels: list[str]
    split: dict  # recorded beside the model as split.json
    fingerprint: list[str]  # identifies the data, for the backup folder's key


def folder_training_data(args, model_path: Path, base_spec: ModelSpec | None) -> TrainingData:
    """A folder of labelled images, decoded into memory and split by a seeded permutation."""
    items, spec, data = load_labelled_folder(args.data_dir, model_path, base_spec, args)
    train_idx, val_idx = split_indices(len(data.labels), args.val_split, args.seed)
    labels = encode_labels(data.labels, spec)
    elements = tf.data.Dataset.from_tensor_slices((data.images[train_idx], labels[train_idx])).cache()
    split = {"data_dir": str(args.data_dir), "seed": args.seed, "val_split": args.val_split,
             "train": [data.paths[i].name for i in train_idx], "validation": [data.paths[i].name for i in val_idx]}
    fingerprint = [f"{path.name}\t{label}\t{path.stat().st_size}" for path, label in items]
    return TrainingData(spec, elements, len(train_idx), data.images[val_idx], [data.labels[i] for i in val_idx],
                        split, fingerprint)


def shard_training_data(args, base_spec: ModelSpec | None) -> TrainingData:
    """TFRecord shards made by tools/pack_tfrecords.py: training streams, validation is held in memory."""
    meta = ocr_records.read_meta(args.data_dir)
    spec = ocr_records.spec_for(meta, args.img_height, args.img_width)
    if base_spec is not None:
        extra = "".join(sorted(set(spec.charset) - set(base_spec.charset)))
        spec = ModelSpec(base_spec.charset + extra, base_spec.height, base_spec.width,
                         max(base_spec.max_label_length, spec.max_label_length))
    check_time_steps([meta["most_time_steps_label"]], spec)
    print(f"{meta['count']} images in {meta['shards']} shards in {args.data_dir}; charset {spec.charset!r}, "
          f"labels up to {spec.max_label_length}; input {spec.height}x{spec.width}, {spec.time_steps} time steps")
    examples = ocr_records.examples(args.data_dir, spec)
    held_out = lambda image, label, path: ocr_records.in_validation(path, args.val_split, args.seed)  # noqa: E731
    val_images, val_labels, val_names = [], [], []
    for image, label, path in examples.filter(held_out):
        val_images.append(image.numpy())
        val_labels.append(ocr_core.decode_indices(label.numpy(), spec.charset))
        val_names.append(path.numpy().decode())
    n_train = meta["count"] - len(val_names)
    train_elements = examples.filter(lambda *e: not held_out(*e)).map(lambda image, label, path: (image, label))
    train_elements = train_elements.apply(tf.data.experimental.assert_cardinality(n_train))  # for the progress bar
    split = {"data_dir": str(args.data_dir), "seed": args.seed, "val_split": args.val_split,
             "rule": "validation = files whose hash of '<seed>/<path>' falls in the first val_split of 10,000 buckets",
             "validation": val_names}
    images = np.stack(val_images) if val_images else np.zeros((0, spec.height, spec.width), np.float32)
    return TrainingData(spec, train_elements, n_train, images, val_labels, split,
                        [json.dumps(meta, sort_keys=True)])


def train(args: argparse.Namespace) -> int:
    """Train on a labelled folder (or TFRecord shards) and save the model, its split, log and plots."""
    strategy = ocr_distributed.make_strategy(args.strategy)  # before any other TensorFlow work
    chief = ocr_distributed.is_chief(strategy)
    if not chief:
        return train_and_save(args, strategy, chief)
    ocr_storage.check_writable(Path(args.model).parent)
    # Two runs writing one model would corrupt each other's backups: the second one stops here.
    with ocr_storage.exclusive_training(Path(args.model)):
        return train_and_save(args, strategy, chief)


def train_and_save(args: argparse.Namespace, strategy: tf.distribute.Strategy, chief: bool) -> int:
    """Build or extend the model, fit it and (on the chief) save it with everything beside it."""
    keras.utils.set_random_seed(args.seed)
    model_path = Path(args.model)
    base = load_reader(args.init_from).model if args.init_from else None
    base_spec = model_info(base).spec if base is not None else None
    if ocr_records.is_record_folder(args.data_dir):
        data = shard_training_data(args, base_spec)
    else:
        data = folder_training_data(args, model_path, base_spec)
    with strategy.scope():
        model = build_model(data.spec) if base is None else extend_model(base, data.spec)
    print(f"training on {data.n_train} images, validating on {len(data.val_labels)} (seed {args.seed}); "
          f"{ocr_distributed.task_description(strategy)}, {strategy.num_replicas_in_sync} replicas")

    # Checkpoints and the log of a run in progress live in a folder keyed to its data and settings:
    # re-running the same command resumes there, and a different run never restores them.
    # Workers other than the chief keep theirs in a temporary folder.
    key = ocr_storage.run_key(data.fingerprint, args, data.spec)
    work = ocr_storage.scratch_dir(model_path) / f"run-{key}" if chief else Path(tempfile.mkdtemp())
    if args.restart:
        shutil.rmtree(work, ignore_errors=True)
    if (work / "backup").exists():
        print(f"resuming from the last finished epoch in {work} (--restart to start over)")
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    val_encoded = encode_labels(data.val_labels, data.spec)
    history = fit(model, data.train_elements, data.n_train, data.val_images, val_encoded, args, work,
                  strategy=strategy)
    seconds = time.monotonic() - started
    if not chief:
        shutil.rmtree(work, ignore_errors=True)
        print(f"worker finished after {seconds:.0f} s; the chief writes the model")
        return 0

    readings = Reader(model).read_arrays(data.val_images)
    seq_acc, cer = ocr_core.score(data.val_labels, [r.text for r in readings])
    model_info(model).validation = {"seq_acc": seq_acc, "cer": cer, "n": len(data.val_labels)}
    print(f"validation: sequence accuracy {seq_acc:.4f}, character error rate {cer:.4f} "
          f"({len(data.val_labels)} images, {seconds:.0f} s of training)")

    ocr_storage.save_model(model, model_path)
    shutil.move(str(work / "training_log.csv"), model_path.with_name("training_log.csv"))
    shutil.rmtree(ocr_storage.scratch_dir(model_path), ignore_errors=True)
    ocr_storage.write_json(model_path.with_name("split.json"), data.split)
    import ocr_plots  # matplotlib is only needed once training is done

    ocr_plots.save_training_plots(model_path.parent, history, model, data.val_images, data.val_labels, readings)
    print(f"saved {model_path} (plots and split.json beside it)")
    if args.test_dir:
        import ocr_evaluation

        ocr_evaluation.evaluate_folder(Reader(model), args.test_dir, model_path.with_name("test_report.json"))
    return 0


# ---------------------------------------------------------------------------
# Inference: the Python API that predict_example.py uses
# ---------------------------------------------------------------------------


class Reader(ocr_core.BaseReader):
    """Reads captchas with a trained Keras model: images in, texts and confidences out."""

    def __init__(self, model: keras.Model) -> None:
        info = model_info(model)
        super().__init__(info.spec, info.validation, info.format_version)
        self.model = model  # as trained: for fine-tuning and export
        self.inference_model = fold_batch_norm(model)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Per-step logits for a preprocessed batch."""
        # predict_on_batch skips the per-call dataset set-up of predict(): 10x faster for one image.
        return self.inference_model.predict_on_batch(batch)


def load_reader(path: str | Path = DEFAULT_MODEL) -> Reader:
    """Load a saved model (safe mode on: nothing in the file is executed) as a Reader."""
    path = ocr_core.existing_model(path)
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # noqa: BLE001 - Keras raises many types for a bad file; all mean "unusable"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"{path}: not a usable ocr_captcha model ({reason[:300]})") from None
    return Reader(model)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in [0, 0.9]."""
    value = float(text)
    if not 0 <= value <= 0.9:
        raise argparse.ArgumentTypeError(f"must be between 0 and 0.9, got {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description="Train a CNN + BiLSTM + CTC captcha reader on a folder of images named by their labels.",
    )
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="folder of labelled images (default: %(default)s)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model file: written by training, read by other modes (default: %(default)s)")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--evaluate", metavar="DIR", help="score --model on a labelled folder (no training)")
    modes.add_argument("--audit", metavar="DIR", help="rank a folder's files by how likely their labels are wrong")
    modes.add_argument("--export-lite", metavar="PATH", help="write --model as one ONNX file for the light runtime")
    modes.add_argument("--export-savedmodel", metavar="DIR", help="write --model as a SavedModel for TF Serving in DIR/1")
    parser.add_argument("--report", metavar="FILE", help="JSON report of --evaluate or --audit (default: beside the model)")
    parser.add_argument("--folds", type=positive_int, default=5, help="models trained by --audit (default: %(default)s)")
    parser.add_argument("--test-dir", metavar="DIR", help="after training, evaluate on this labelled folder")
    parser.add_argument("--init-from", metavar="MODEL", help="fine-tune this saved model instead of starting fresh")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help=f"maximum number of epochs (default: {DEFAULT_EPOCHS}, or more for small datasets so "
                             f"that training sees at least {MIN_TRAINING_IMAGES:,} images)")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help=f"images per training step and replica (default: {DEFAULT_BATCH_SIZE}, "
                             f"{SMALL_DATA_BATCH_SIZE} below {SMALL_DATA_BELOW:,} training images)")
    parser.add_argument("--learning-rate", type=float, default=DEFAULT_LEARNING_RATE,
                        help="peak learning rate (cosine schedule) (default: %(default)s)")
    parser.add_argument("--patience", type=positive_int, default=None,
                        help=f"epochs without a better val loss before stopping (default: {DEFAULT_PATIENCE}, "
                             "or a quarter of the epochs if more)")
    parser.add_argument("--seed", type=int, default=1337, help="seed for the split, shuffling and weights (default: %(default)s)")
    parser.add_argument("--val-split", type=fraction, default=0.1, help="fraction of images held out for validation (default: %(default)s)")
    parser.add_argument("--img-height", type=positive_int, default=DEFAULT_IMG_HEIGHT, help="model input height (default: %(default)s)")
    parser.add_argument("--img-width", type=positive_int, default=None,
                        help="model input width (default: from the median aspect ratio of the data)")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                        help=f"random distortions of training images (default: on below {SMALL_DATA_BELOW:,} of them)")
    parser.add_argument("--restart", action="store_true", help="ignore the backup of an interrupted run")
    parser.add_argument("--strategy", choices=("auto", "mirrored", "multiworker"), default="auto",
                        help="tf.distribute strategy; multiworker reads TF_CONFIG (default: %(default)s)")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1, help="Keras progress output")
    args = parser.parse_args(argv)
    if args.init_from and (args.evaluate or args.audit or args.export_lite or args.export_savedmodel):
        parser.error("--init-from is for training only")
    return args


def run(args: argparse.Namespace) -> int:
    """Dispatch to the mode the arguments ask for; training is the default."""
    if args.evaluate:
        import ocr_evaluation

        report = Path(args.report) if args.report else Path(args.model).with_name("evaluation.json")
        ocr_evaluation.evaluate_folder(load_reader(args.model), args.evaluate, report)
        return 0
    if args.audit:
        import ocr_evaluation

        return ocr_evaluation.audit_folder(args)
    if args.export_lite:
        import ocr_export

        ocr_export.export_lite(load_reader(args.model), Path(args.export_lite))
        return 0
    if args.export_savedmodel:
        import ocr_export

        ocr_export.export_savedmodel(load_reader(args.model), Path(args.export_savedmodel))
        return 0
    return train(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the script; errors become one line on stderr and exit status 1."""
    args = parse_args(argv)
    try:
        return run(args)
    except (DatasetError, ImageReadError, ModelLoadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from the last finished epoch", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Run the copy of this file that the helper modules import by name, so that
    # they share one set of classes (a model's ModelInfo layer is checked by class).
    import ocr_captcha

    sys.exit(ocr_captcha.main())
