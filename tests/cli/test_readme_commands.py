"""The README's command list (its first screen) names commands and options the CLI has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from steward.cli.main import _register_subcommands, app

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_commands() -> list[tuple[list[str], list[str]]]:
    """(command path, options) per command the block after "Command line" names."""
    text = README.read_text()
    block = text.split("Command line (`.venv/bin/steward --help`)", 1)[1]
    block = block.split("```bash", 1)[1].split("```", 1)[0]
    found: list[tuple[list[str], list[str]]] = []
    for line in block.strip().splitlines():
        segments = [s.strip() for s in line.split("#", 1)[0].split(" / ")]
        prefix: list[str] = []
        for segment in segments:
            words = segment.split()
            if words[0] == "steward":
                words = words[1:]
            elif not prefix or words[0] != prefix[0]:
                words = prefix + words
            path = []
            for word in words:
                if not re.fullmatch(r"[a-z][a-z-]*", word):
                    break
                path.append(word)
            if not prefix:
                prefix = path[:-1] if len(path) > 1 else path
            found.append((path, re.findall(r"(?<![\w-])-{1,2}[a-z][a-z-]*", segment)))
    return found


COMMANDS = _readme_commands()


def test_the_readme_lists_the_commands() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"health", "archive status", "backup physical status", "outbox install"} <= names


@pytest.mark.parametrize(("path", "options"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_each_readme_command_and_option_exists(path: list[str], options: list[str]) -> None:
    _register_subcommands()
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "250", "NO_COLOR": "1"})
    assert result.exit_code == 0, f"steward {' '.join(path)} --help: {result.output}"
    for option in options:
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", result.output), (
            f"steward {' '.join(path)} has no {option}:\n{result.output}"
        )
