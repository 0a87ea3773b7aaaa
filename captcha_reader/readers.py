"""One way to open a model file for reading, whatever runs it.

    from captcha_reader import open_reader
    reader = open_reader("model/ocr_captcha.onnx")   # onnxruntime, no TensorFlow imported
    reader = open_reader("model/ocr_captcha.keras")  # Keras
    print(reader.read(["test.png"])[0].text)
"""

from pathlib import Path
from typing import Literal, Union, get_args

from captcha_reader import lite
from captcha_reader.reading import BaseReader, existing_model

Runtime = Literal["auto", "keras", "lite"]
RUNTIMES = get_args(Runtime)


def open_reader(path: Union[str, Path], runtime: Runtime = "auto") -> BaseReader:
    """A reader for a `.keras` or `.onnx` model file; `auto` picks the runtime from the file."""
    path = existing_model(path)  # before its first bytes are read: it may be missing, a folder or a FIFO
    if runtime == "lite" or (runtime == "auto" and lite.is_lite_model(path)):
        return lite.load_lite_reader(path)
    # Imported here: TensorFlow takes seconds to import, and an ONNX model never needs it.
    from captcha_reader.model import load_keras_reader

    return load_keras_reader(path)
