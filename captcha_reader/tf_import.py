"""TensorFlow and Keras, imported once without TensorFlow's C++ start-up messages.

Every module that needs them imports them from here, so whichever comes first keeps
the console quiet (TensorFlow prints some of them whatever TF_CPP_MIN_LOG_LEVEL says).
"""

import os

from captcha_reader.base import silenced_stderr

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
with silenced_stderr():
    import keras
    import tensorflow as tf

__all__ = ["keras", "tf"]
