"""The Keras "OCR model for reading Captchas" example's network, the reference our recipe is measured against.

A: as published (200x50 input, Conv 32/64, Dense 64, BiLSTM 128/64); B: the same with
BatchNormalization after each convolution. Both carry our ModelInfo layer, so that they
save, load and read like our models.
"""

from captcha_reader.base import ModelSpec
from captcha_reader.model import ModelInfo
from captcha_reader.tf_import import keras

layers = keras.layers


def build_keras_example(spec: ModelSpec, batch_norm: bool) -> keras.Model:
    """The Keras example's CRNN (A), optionally with BatchNormalization after each convolution (B)."""
    inputs = keras.Input(shape=(spec.height, spec.width), name="image")
    x = layers.Reshape((spec.height, spec.width, 1))(inputs)
    for filters in (32, 64):
        x = layers.Conv2D(filters, 3, activation=None if batch_norm else "relu", kernel_initializer="he_normal",
                          padding="same")(x)
        if batch_norm:
            x = layers.ReLU()(layers.BatchNormalization()(x))
        x = layers.MaxPooling2D(2)(x)
    x = layers.Permute((2, 1, 3))(x)
    x = layers.Reshape((spec.width // 4, -1))(x)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dropout(0.2)(x)
    x = layers.Bidirectional(layers.LSTM(128, return_sequences=True, dropout=0.25))(x)
    x = layers.Bidirectional(layers.LSTM(64, return_sequences=True, dropout=0.25))(x)
    logits = layers.Dense(spec.num_classes)(x)
    outputs = ModelInfo(**spec.to_dict(), name="model_info")(logits)
    return keras.Model(inputs, outputs, name=f"keras_example{'_bn' if batch_norm else ''}")
