"""The light runtime: read captchas with an ONNX export of a model, without TensorFlow.

    python ocr_captcha.py --export-lite model/ocr_captcha.onnx        # once, from the .keras model
    python predict_example.py test.png --model model/ocr_captcha.onnx

The ONNX file holds the network (convolutions with their batch norm folded in, the two
BiLSTMs, the logits) and, in its metadata, the charset and geometry. Preprocessing and
decoding (format-aware or greedy) are the shared ones of the core, so both runtimes read alike. Only
onnxruntime, NumPy and Pillow are imported: starting takes a fraction of a second.
"""

import json
from pathlib import Path
from typing import Union

import numpy as np

from captcha_reader.base import ModelLoadError, ModelSpec, first_line, spec_mismatch
from captcha_reader.reading import BaseReader, existing_model

METADATA_KEY = "ocr_captcha"
LITE_SUFFIX = ".onnx"
# A model of ours is a few MB (see model.MAX_WEIGHTS_BYTES); a larger file is not read.
MAX_LITE_BYTES = 128 * 2**20


class LiteReader(BaseReader):
    """Reads captchas with an ONNX export of a model, through onnxruntime."""

    def __init__(self, session, metadata: dict) -> None:
        super().__init__(ModelSpec(**metadata["spec"]), metadata.get("validation", {}), metadata["format_version"])
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Per-step logits for a preprocessed batch."""
        return self.session.run(None, {self.input_name: batch.astype(np.float32, copy=False)})[0]


def is_lite_model(path: Union[str, Path]) -> bool:
    """True for an ONNX file: by its suffix, or else by not being a zip archive as `.keras` files are."""
    path = Path(path)
    if path.suffix.lower() in (LITE_SUFFIX, ".keras"):
        return path.suffix.lower() == LITE_SUFFIX
    try:
        with open(path, "rb") as handle:
            return handle.read(4) != b"PK\x03\x04"
    except OSError:
        return False


def lite_metadata(spec: ModelSpec, validation: dict, format_version: int) -> str:
    """The JSON stored in the ONNX file's metadata."""
    return json.dumps({"spec": spec.to_dict(), "validation": validation, "format_version": format_version})


def load_lite_reader(path: Union[str, Path]) -> LiteReader:
    """Load an ONNX export made by `ocr_captcha.py --export-lite`."""
    path = existing_model(path)
    try:
        import onnxruntime
    except ImportError:
        raise ModelLoadError("onnxruntime is not installed: pip install -r requirements.txt") from None
    if path.stat().st_size > MAX_LITE_BYTES:
        raise ModelLoadError(f"{path}: {path.stat().st_size:,} bytes; a model of ours needs at most {MAX_LITE_BYTES:,}")
    try:
        options = onnxruntime.SessionOptions()
        # Idle threads sleep instead of spinning: with other work on the cores (the service's event loop,
        # other programs) spinning threads took 3x longer per batch on the 2-core machine (benchmarks/levers.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        metadata = json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
        reader = LiteReader(session, metadata)
    except Exception as error:  # noqa: BLE001 - onnxruntime and a bad file raise many types; all mean "unusable"
        raise ModelLoadError(f"{path}: not a usable ocr_captcha ONNX model ({first_line(error)[:300]})") from None
    mismatch = spec_mismatch(reader.spec, free_dimensions(session.get_inputs()[0].shape),
                             free_dimensions(session.get_outputs()[0].shape))
    if mismatch:
        raise ModelLoadError(f"{path}: not a usable ocr_captcha ONNX model: {mismatch}"[:500])
    return reader


def free_dimensions(shape: list) -> tuple:
    """An onnxruntime shape with its named (symbolic) dimensions as None."""
    return tuple(d if isinstance(d, int) else None for d in shape)
