"""`flywheel --help` lists each command with a whole sentence, not a docstring cut at its
source line breaks."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from flywheel.cli.app import app

# Wide enough for every summary to fit on one row: a row that does not end a sentence is
# then a hard line break inside a summary.
WIDE = {"COLUMNS": "400", "TERMINAL_WIDTH": "400"}


def command_rows(args: list[str]) -> dict[str, list[str]]:
    """The Commands panel of ``flywheel <args> --help``: each command's rows of text."""
    result = CliRunner().invoke(app, [*args, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    panel = result.output.split("Commands")[1]
    rows: dict[str, list[str]] = {}
    name = ""
    for line in panel.splitlines()[1:]:
        cells = re.fullmatch(r"│ (\S*)\s+(.*?)\s*│", line)
        if cells is None:
            break  # the panel's bottom border
        name = cells.group(1) or name
        rows.setdefault(name, []).append(cells.group(2))
    return rows


@pytest.mark.parametrize("group", [[], ["topics"], ["schemas"], ["streams"], ["trainers"], ["registry"]])
def test_each_command_summary_is_one_whole_sentence_or_more(group: list[str]) -> None:
    rows = command_rows(group)
    assert rows, "no commands listed"
    for name, texts in rows.items():
        assert len(texts) == 1 and texts[0].endswith("."), f"{name}: {texts}"
