"""The figures a training run writes beside its model: learning curve, network diagram, sample readings.

Only matplotlib is used (no Graphviz), so the figures work with a pip-only set-up.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from captcha_reader.files import beside_model  # noqa: E402
from captcha_reader.images import decode_image  # noqa: E402
from captcha_reader.tf_import import keras  # noqa: E402


def save_learning_curve(history: dict, path: Path) -> None:
    """Loss, sequence accuracy and character error rate per epoch, training and validation."""
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    panels = [("loss", "CTC loss"), ("seq_acc", "sequence accuracy"), ("cer", "character error rate")]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for axis, (key, title) in zip(axes, panels):
        for prefix, style, label in (("", "-", "training"), ("val_", "--", "validation")):
            if prefix + key in history:
                axis.plot(epochs, history[prefix + key], style, marker=".", label=label)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend()
    axes[0].set_yscale("log")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def merged_inputs(model: keras.Model) -> dict[str, list[str]]:
    """For each layer that joins several tensors, the names of the layers it takes them from."""
    merged = {}
    for layer in model.get_config()["layers"]:
        for node in layer.get("inbound_nodes", []):
            tensors = node["args"][0] if node["args"] else None
            if isinstance(tensors, list) and len(tensors) > 1:
                merged[layer["name"]] = [tensor["config"]["keras_history"][0] for tensor in tensors]
    return merged


def layer_summary(layer: keras.layers.Layer, sources: list[str] | None = None) -> tuple[str, str]:
    """(title, output shape) lines for one layer's box in the diagram."""
    kind = type(layer).__name__
    if sources:
        kind = f"{kind} of {' + '.join(sources)}"
    inner = getattr(layer, "forward_layer", None)
    if inner is not None:
        kind = f"Bidirectional({type(inner).__name__} {inner.units})"
    elif hasattr(layer, "filters"):
        kind = f"{kind} {layer.filters} {layer.kernel_size[0]}x{layer.kernel_size[1]}"
    elif hasattr(layer, "units"):
        kind = f"{kind} {layer.units}"
    elif hasattr(layer, "pool_size"):
        kind = f"{kind} {layer.pool_size[0]}x{layer.pool_size[1]}"
    shape = getattr(layer, "output", None)
    shape = tuple(shape.shape) if shape is not None else ()
    return f"{layer.name}: {kind}", "output " + str(shape).replace("None", "batch")


def save_model_structure(model: keras.Model, path: Path) -> None:
    """A top-to-bottom box diagram of the network's layers with their output shapes."""
    merged = merged_inputs(model)
    rows = [layer_summary(layer, merged.get(layer.name)) for layer in model.layers]
    height = 0.55 * len(rows) + 0.6
    figure, axis = plt.subplots(figsize=(6.4, height))
    axis.set_xlim(0, 1)
    axis.set_ylim(len(rows), -0.6)
    axis.axis("off")
    for i, (title, shape) in enumerate(rows):
        axis.text(0.5, i, f"{title}\n{shape}", ha="center", va="center", fontsize=8.5, family="monospace",
                  bbox={"boxstyle": "round,pad=0.3", "facecolor": "#e8f0fe", "edgecolor": "#4a6fa5"})
        if i:
            axis.annotate("", xy=(0.5, i - 0.32), xytext=(0.5, i - 0.68), arrowprops={"arrowstyle": "->"})
    axis.set_title(f"{model.name}: {model.count_params():,} parameters", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def save_sample_predictions(images: np.ndarray, truths: list[str], readings: list, path: Path, count: int = 16) -> None:
    """A grid of validation images with reading and truth; misreads first, in red."""
    order = sorted(range(len(truths)), key=lambda i: readings[i].text == truths[i])[:count]
    columns = 4
    rows = max(1, int(np.ceil(len(order) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 1.55 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, i in zip(axes.flat, order):
        right = readings[i].text == truths[i]
        axis.imshow(images[i], cmap="gray", vmin=0, vmax=1)
        mark = "" if right else "  MISREAD"
        axis.set_title(f"read {readings[i].text!r}  truth {truths[i]!r}{mark}", fontsize=8,
                       color="black" if right else "red")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def save_training_plots(model_path: Path, history: dict, model: keras.Model, images: np.ndarray, truths: list[str],
                        readings: list) -> None:
    """Write the run's learning curve, network and sample readings beside the model, named after it."""
    save_learning_curve(history, beside_model(model_path, "learning_curve.png"))
    save_model_structure(model, beside_model(model_path, "model_structure.png"))
    if len(truths):
        save_sample_predictions(images, truths, readings, beside_model(model_path, "sample_predictions.png"))


def save_contact_sheet(ranking: list[dict], path: Path, count: int = 40) -> None:
    """The audit's most suspicious files: each image with its given label, the reading and p(label)."""
    rows_shown = ranking[:count]
    columns = 4
    rows = max(1, int(np.ceil(len(rows_shown) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 1.5 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for rank, (axis, row) in enumerate(zip(axes.flat, rows_shown), start=1):
        axis.imshow(decode_image(row["path"], "RGB"))
        axis.set_title(f"#{rank} label {row['label']!r} read {row['pred']!r}\np={row['p_label']:.2g}  "
                       f"{Path(row['path']).name}", fontsize=7, color="red" if row["label"] != row["pred"] else "black")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
