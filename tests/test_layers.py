"""The package's import layers (`.importlinter`): no module imports a layer above it, and the core
never imports TensorFlow. The check is import-linter's; this test runs it and shows it can fail."""

import shutil
import subprocess
import sys

from conftest import ROOT


def lint_imports(root) -> subprocess.CompletedProcess:
    """Run import-linter on the package found in `root`."""
    return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command;"
                           " sys.exit(lint_imports_command())"],
                          cwd=root, capture_output=True, text=True, timeout=300)


def test_the_layers_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_a_back_import_breaks_the_layers(tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(ROOT / "captcha_reader", copy / "captcha_reader", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", copy / ".importlinter")
    images = copy / "captcha_reader" / "images.py"
    images.write_text(images.read_text() + "\nfrom captcha_reader import training  # noqa: E402,F401\n")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "captcha_reader.images is not allowed to import captcha_reader.training" in result.stdout
