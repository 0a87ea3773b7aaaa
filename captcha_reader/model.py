"""The network: a CRNN (convolutions, two bidirectional LSTMs, per-step logits) read with CTC.

Building a model has no side effects; training lives in `training.py`. A saved model
carries its charset and geometry in a ModelInfo layer, so one `.keras` file is all a
reader needs, and it loads in Keras' safe mode (no Lambda layers, nothing executed).
"""

import zipfile
from pathlib import Path

import numpy as np

from captcha_reader.base import (
    BLANK_INDEX,
    DEFAULT_MIN_LABEL_LENGTH,
    FORMAT_VERSION,
    ModelLoadError,
    ModelSpec,
    first_line,
    spec_mismatch,
)
from captcha_reader.labels import encode_label
from captcha_reader.reading import BaseReader, existing_model
from captcha_reader.tf_import import keras

layers = keras.layers

# The blank's starting logit, above every character's 0 (see build_model).
INITIAL_BLANK_LOGIT = 2.0
# Bounds on a .keras archive before it is read. Our largest plausible model (a CJK charset of
# 20,000 characters, tall inputs) holds about 5 million weights, 20 MB; the config is tens of kB.
WEIGHTS_MEMBER = "model.weights.h5"
MAX_WEIGHTS_BYTES = 128 * 2**20
MAX_OTHER_MEMBER_BYTES = 16 * 2**20
MAX_ARCHIVE_MEMBERS = 16


@keras.saving.register_keras_serializable(package="ocr_captcha")
class ModelInfo(layers.Layer):
    """Identity layer that stores the charset, geometry, label lengths and validation scores in the saved model."""

    def __init__(self, charset: str, height: int, width: int, max_label_length: int, validation: dict | None = None,
                 format_version: int = FORMAT_VERSION, min_label_length: int = DEFAULT_MIN_LABEL_LENGTH, capacity: int = 1,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.spec = ModelSpec(charset, int(height), int(width), int(max_label_length), int(min_label_length),
                              int(capacity))
        self.validation = dict(validation or {})
        self.format_version = int(format_version)

    def call(self, inputs: object) -> object:
        """Pass the logits through unchanged."""
        return inputs

    def get_config(self) -> dict:
        """Config that round-trips through the `.keras` file."""
        config = super().get_config()
        config.update(self.spec.to_dict(), validation=self.validation, format_version=self.format_version)
        return config


def build_model(spec: ModelSpec, batch_norm: bool = True) -> keras.Model:
    """The CRNN: three conv blocks with batch norm, two BiLSTMs, per-step logits (class 0 is the blank).

    The conv blocks have 16, 32 and 64 filters times `spec.capacity`. Without `batch_norm` the
    convolutions carry a bias instead: the shape of a model whose normalisation has been folded
    into its convolutions for inference (`fold_batch_norm`).
    """
    inputs = keras.Input(shape=(spec.height, spec.width), name="image")
    x = layers.Reshape((spec.height, spec.width, 1), name="add_channel")(inputs)
    # Pool height more than width: the width becomes the CTC time axis (one step per 4 columns).
    for i, (filters, pool) in enumerate(((16, (2, 2)), (32, (2, 2)), (64, (2, 1))), start=1):
        x = layers.Conv2D(filters * spec.capacity, 3, padding="same", use_bias=not batch_norm, kernel_initializer="he_normal",
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
    bias[BLANK_INDEX] = INITIAL_BLANK_LOGIT
    logits_layer.bias.assign(bias)
    return keras.Model(inputs, outputs, name="ocr_captcha")


def extend_model(base: keras.Model, spec: ModelSpec) -> keras.Model:
    """A new model for `spec` that starts from `base`'s weights.

    The output layer is rebuilt for `spec`'s charset: each character the base model knows keeps
    its weights, new characters start fresh, and characters `spec` lacks are dropped.
    """
    model = build_model(spec)
    missing = sorted({layer.name for layer in model.layers} - {layer.name for layer in base.layers})
    if missing:
        raise ModelLoadError(f"--init-from: the model lacks layers of this version's network ({', '.join(missing)});"
                             " it was made by another version: train from scratch instead")
    old_charset = model_info(base).spec.charset
    for layer in model.layers:
        old = base.get_layer(layer.name)
        if layer.name != "logits":
            layer.set_weights(old.get_weights())
            continue
        kernel, bias = layer.get_weights()
        old_kernel, old_bias = old.get_weights()
        kept = "".join(char for char in spec.charset if char in old_charset)
        pairs = zip(encode_label(kept, spec.charset), encode_label(kept, old_charset))
        for new, old_index in [(BLANK_INDEX, BLANK_INDEX), *pairs]:
            kernel[:, new], bias[new] = old_kernel[:, old_index], old_bias[old_index]
        layer.set_weights([kernel, bias])
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


def capacity_mismatch(model: keras.Model, spec: ModelSpec) -> str | None:
    """Why the model's first convolution does not have the filters its capacity says, or None."""
    if "conv_1" not in {layer.name for layer in model.layers}:
        return None  # another architecture: read as it is
    filters = model.get_layer("conv_1").filters
    if filters != 16 * spec.capacity:
        return f"its metadata says capacity {spec.capacity} but its first convolution has {filters} filters"
    return None


def model_info(model: keras.Model) -> ModelInfo:
    """The ModelInfo layer of one of our models."""
    for layer in model.layers:
        if isinstance(layer, ModelInfo):
            return layer
    raise ModelLoadError(f"model {model.name!r} has no ModelInfo layer: not an ocr_captcha model")


class KerasReader(BaseReader):
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


def check_archive_sizes(path: Path) -> None:
    """Refuse a .keras archive whose members inflate beyond what a model of ours needs, before Keras reads it.

    zipfile never yields more than a member's declared size (it checks the CRC there), so the
    declared sizes bound what Keras can load into memory or extract to the temporary folder.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        raise ModelLoadError(f"{path}: not a usable ocr_captcha model (not a .keras archive: {error})") from None
    if len(members) > MAX_ARCHIVE_MEMBERS:
        raise ModelLoadError(f"{path}: {len(members)} files in the archive; a model of ours has a handful")
    for member in members:
        limit = MAX_WEIGHTS_BYTES if member.filename == WEIGHTS_MEMBER else MAX_OTHER_MEMBER_BYTES
        if member.file_size > limit:
            raise ModelLoadError(f"{path}: {member.filename!r} would take {member.file_size:,} bytes uncompressed;"
                                 f" a model of ours needs at most {limit:,}")
    total = sum(member.file_size for member in members)
    if total > MAX_WEIGHTS_BYTES + MAX_OTHER_MEMBER_BYTES:
        raise ModelLoadError(f"{path}: its files would take {total:,} bytes uncompressed; a model of ours needs at most"
                             f" {MAX_WEIGHTS_BYTES + MAX_OTHER_MEMBER_BYTES:,}")


def load_keras_reader(path: str | Path) -> KerasReader:
    """Load a saved model (safe mode on: nothing in the file is executed) as a KerasReader, its metadata checked."""
    path = existing_model(path)
    check_archive_sizes(path)
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # noqa: BLE001 - Keras raises many types for a bad file; all mean "unusable"
        raise ModelLoadError(f"{path}: not a usable ocr_captcha model ({first_line(error)[:300]})") from None
    spec = model_info(model).spec
    mismatch = spec_mismatch(spec, tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)) or capacity_mismatch(
        model, spec)
    if mismatch:
        raise ModelLoadError(f"{path}: not a usable ocr_captcha model: {mismatch}"[:500])
    return KerasReader(model)
