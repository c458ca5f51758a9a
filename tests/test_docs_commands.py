"""The shell commands written in README.md, models/README.md and BENCHMARKS.md run as written (issue 19, "Done
when"): .ci/docs_commands.py runs the cheap ones on a few photos and skips the long ones by its listed RULES."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _docs_commands() -> ModuleType:
    # .ci is no package (its name starts with a dot): loaded from its file.
    spec = importlib.util.spec_from_file_location("docs_commands", REPO / ".ci" / "docs_commands.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["docs_commands"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


docs_commands = _docs_commands()


def test_every_documented_command_is_run_or_skipped_for_a_listed_reason() -> None:
    commands = docs_commands.all_commands()
    assert {command.doc for command in commands} == set(docs_commands.DOCS)
    reasons = {rule.skip for rule in docs_commands.RULES if rule.skip}
    for command in commands:
        assert command.skip is None or command.skip in reasons or "absent here" in command.skip, command
    ran = [command.command for command in commands if command.skip is None]
    if docs_commands.DATA.is_dir():
        assert any(text.startswith("cassava-edge info") for text in ran)
        assert any("benchmarks.latency" in text and "--count 2" in text for text in ran)
    # The long ones never run: training, export, the servers.
    assert not any(word in text for text in ran for word in ("python -m training", "python -m export", " serve "))


def test_extraction_joins_continued_lines_and_loops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "DOC.md").write_text(
        "text\n```bash\n# a comment\ncassava-edge info \\\n  --format json   # trailing\n\nfor K in 1 2; do\n"
        "  echo $K\ndone\nfor K in 3 4; do echo $K; done\ncassava-edge models\n```\n```python\nprint('not shell')\n"
        "```\n```bash\ncassava-edge info\n```\n"
    )
    monkeypatch.setattr(docs_commands, "REPO", tmp_path)
    found = docs_commands.extract("DOC.md")
    assert [(c.line, c.written) for c in found] == [
        (4, "cassava-edge info \\\n  --format json   # trailing"),
        (7, "for K in 1 2; do\n  echo $K\ndone"),
        (10, "for K in 3 4; do echo $K; done"),  # a one-line loop ends on its own line
        (11, "cassava-edge models"),
        (17, "cassava-edge info"),
    ]


def test_the_documented_commands_run(capsys: pytest.CaptureFixture[str]) -> None:
    """About a minute on 2 cores: every command not skipped, in a scratch copy with a few photos."""
    code = docs_commands.main([])
    output = capsys.readouterr().out
    assert code == 0, output
    assert " 0 failed" in output.splitlines()[-1]
