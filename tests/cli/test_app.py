"""The top-level command: instant help and version, lazily imported commands (issue 9, defect 15)."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

from typer.testing import CliRunner

from maskclip_cli._version import __version__
from maskclip_cli.cli import COMMANDS, app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"maskclip {__version__}"


def test_help_lists_every_command_without_loading_torch():
    """`maskclip --help` used to import torch and open_clip through every command module (~5-10 s)."""
    code = (
        "import sys\n"
        "from maskclip_cli.cli import app\n"
        "try:\n"
        "    app(['--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "heavy = sorted(m for m in ('torch', 'open_clip', 'torchvision', 'PIL', 'numpy') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in result.stdout
    for name in COMMANDS:
        assert f" {name} " in result.stdout


def test_command_summaries_match_the_commands():
    """The summaries shown without importing the commands are their docstrings' first paragraphs."""
    for name, (module, summary) in COMMANDS.items():
        importlib.import_module(f"maskclip_cli.cli.{module}")
        info = next(c for c in app.registered_commands if c.name == name)
        assert " ".join(inspect.getdoc(info.callback).split("\n\n")[0].split()) == summary


def test_commands_run_through_the_lazy_group(tmp_path):
    """A command is imported on use: its own help and its errors work as before."""
    result = runner.invoke(app, ["demo", "--help"])
    assert result.exit_code == 0 and "cpu (the default" in " ".join(result.output.split())
    result = runner.invoke(app, ["label", str(tmp_path / "missing"), "--classes", "cat"])
    assert result.exit_code == 2 and "Input folder not found" in result.output
