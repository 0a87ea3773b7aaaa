"""What every layer of the package shares: the errors a user sees, the model spec, a few constants.

Nothing here imports TensorFlow, Keras, Pillow or onnxruntime.
"""

import contextlib
import os
import select
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass

# Index 0 of the model's output is the CTC blank; character i of the charset is class i + 1.
BLANK_INDEX = 0
# The convolutional stack halves the width twice: one CTC time step per 4 columns.
WIDTH_PER_TIME_STEP = 4
# Version of what a saved model carries besides its weights (the ModelInfo layer, the ONNX metadata).
# 2: the model spec records the shortest training label (min_label_length).
# 3: it records the network's capacity (convolution filters); older models have capacity 1.
FORMAT_VERSION = 3
# The shortest label of models saved before they recorded it: any non-empty reading up to the longest.
DEFAULT_MIN_LABEL_LENGTH = 1


class UserError(ValueError):
    """A problem with the user's input that the command line reports as one line."""


class ImageReadError(UserError):
    """An image that cannot be read: the message names the file and the problem."""


class DatasetError(UserError):
    """A folder, label set or setting that cannot be used: the message says why."""


class SettingError(DatasetError):
    """A setting no run can use: `name` is the setting, `problem` what is wrong with its value."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name, self.problem = name, problem


class ModelLoadError(UserError):
    """A model file that is missing, corrupt, or not one of ours."""


class TextFormatError(UserError):
    """A text format (charset, lengths) that the model cannot read: the message says why."""


@dataclass(frozen=True)
class ModelSpec:
    """What a saved model needs besides its weights: charset, geometry and the label lengths seen in training."""

    charset: str
    height: int
    width: int
    max_label_length: int
    min_label_length: int = DEFAULT_MIN_LABEL_LENGTH
    capacity: int = 1  # convolution filters per block: 16, 32 and 64 times this

    @property
    def num_classes(self) -> int:
        """Output classes: one per character plus the CTC blank."""
        return len(self.charset) + 1

    @property
    def time_steps(self) -> int:
        """Number of CTC time steps the network emits per image."""
        return self.width // WIDTH_PER_TIME_STEP

    def to_dict(self) -> dict:
        """Plain-dict form, for JSON and Keras configs."""
        return asdict(self)


def spec_mismatch(spec: ModelSpec, input_shape: tuple, output_shape: tuple) -> str | None:
    """Why a model's metadata does not describe its network (shapes with None for free dimensions), or None."""
    numbers = (spec.height, spec.width, spec.min_label_length, spec.max_label_length, spec.capacity)
    if not isinstance(spec.charset, str) or not all(type(n) is int for n in numbers):
        return f"its metadata {spec.to_dict()} is not a charset and five whole numbers"
    if not spec.charset or len(set(spec.charset)) != len(spec.charset):
        return f"its charset {spec.charset!r} is empty or repeats a character"
    if min(numbers) < 1:
        return (f"its geometry {spec.height}x{spec.width}, label lengths {spec.min_label_length}-"
                f"{spec.max_label_length} or capacity {spec.capacity} is not positive")
    if spec.min_label_length > spec.max_label_length:
        return f"its shortest label ({spec.min_label_length}) is longer than its longest ({spec.max_label_length})"
    if len(input_shape) != 3 or any(d not in (None, want) for d, want in zip(input_shape[1:], (spec.height, spec.width))):
        return f"its metadata says {spec.height}x{spec.width} images but the network's input is {tuple(input_shape)}"
    if len(output_shape) != 3 or output_shape[2] != spec.num_classes:
        return (f"its charset of {len(spec.charset)} characters needs {spec.num_classes} output classes"
                f" but the network's output is {tuple(output_shape)}")
    if output_shape[1] not in (None, spec.time_steps) or spec.max_label_length > spec.time_steps:
        return (f"its metadata says {spec.time_steps} time steps for labels up to {spec.max_label_length}"
                f" characters but the network's output is {tuple(output_shape)}")
    return None


def first_line(error: BaseException) -> str:
    """An exception's message on one line, or its type's name when it has none."""
    message = str(error).strip()
    return message.splitlines()[0] if message else type(error).__name__


def printable(name: str) -> str:
    r"""A file name on one line, in valid UTF-8 and unambiguous: escaped as in a Python string literal.

    A backslash becomes `\\`; tab, newline and carriage return `\t`, `\n`, `\r`; bytes that are not
    UTF-8 `\xNN`; other characters that are not printable `\xNN`, `\uNNNN` or `\UNNNNNNNN`.
    """
    def escaped(character: str) -> str:
        """One character as it is printed."""
        if "\udc80" <= character <= "\udcff":  # a byte that was not UTF-8, as os.fsdecode keeps it
            return f"\\x{ord(character) - 0xDC00:02x}"
        return character if character.isprintable() else ascii(character)[1:-1]

    return "".join(map(escaped, name.replace("\\", "\\\\")))


def counted(number: int, noun: str) -> str:
    """`1 image`, `2 images`: a number with its noun."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def width_for(height: int, aspect: float) -> int:
    """The model input width for a height and an aspect ratio: a whole number of time steps."""
    return max(WIDTH_PER_TIME_STEP, round(height * aspect / WIDTH_PER_TIME_STEP) * WIDTH_PER_TIME_STEP)


@contextlib.contextmanager
def silenced_stderr():
    """Send file descriptor 2 to the null device for the duration, C libraries included."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def quiet_when_output_closes(command: Callable[[], int]) -> int:
    """Run a script's command; when the reader of its output went away (`| head`), end quietly with status 141."""
    try:
        try:
            return command()
        finally:
            sys.stdout.flush()  # a closed pipe fails here, where it is caught, not at exit with a traceback
    except BrokenPipeError as error:
        if not stdout_reader_gone():
            print(f"error: {error}", file=sys.stderr)  # some other pipe broke
            return 1
        # As Python's documentation advises for SIGPIPE: the rest of the output goes to the null device,
        # so that the flush at exit does not fail again.
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
        return 141  # what a shell reports for a command stopped by SIGPIPE (128 + 13)


def stdout_reader_gone() -> bool:
    """True when stdout is a pipe whose reading end is closed."""
    poller = select.poll()
    poller.register(sys.stdout.fileno(), select.POLLOUT)
    return any(event & select.POLLERR for _, event in poller.poll(0))
