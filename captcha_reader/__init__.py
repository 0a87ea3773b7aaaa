"""captcha_reader: train and run CNN + BiLSTM + CTC captcha readers.

The modules stand in layers; each imports only from the layers below it (checked by the
import-linter contract in `.importlinter`):

    label_training | labelling    the labelling page's training process; the page (a page of the service's app, TF-free)
    audit | service               out-of-fold label audit (trains k models); the HTTP app: reading, and other pages
    training                      the training recipe: data pipeline, optimizer, fit, save
    export | distributed | plots  ONNX and SavedModel exports, tf.distribute, figures of a run
    records                       TFRecord shards, and images decoded in TensorFlow ops
    readers | metrics             open_reader (.keras or .onnx); metrics shown every epoch
    model                         the network and its Keras reader
    tf_import                     TensorFlow and Keras, imported quietly
    evaluation | lite             scoring a folder with any reader; the onnxruntime reader
    label_loop                    labels.csv as an answers log, queue order, suggestions, review reports
    reading                       BaseReader: preprocess, run the network, decode; where the base model is
    verdict                       what a run's validation score says
    data | decoding | files       folders to arrays; CTC decoding; atomic writes
    labels                        file names and labels.csv; the charset
    images | settings             every image read one way; training settings
    base                          errors, ModelSpec, constants

Nothing below `tf_import` imports TensorFlow or Keras; `readers` imports `model` only for a `.keras` file.
`base_model/` holds the shipped base model (`base.keras`, made by tools/train_base_model.py) and its recipe.
"""

from captcha_reader.readers import open_reader

__all__ = ["open_reader"]
