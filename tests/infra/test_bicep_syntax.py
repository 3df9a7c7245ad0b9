"""Every .bicep file parses (tree-sitter-bicep), and the parser really catches syntax errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.infra.bicep_tools import EXTENSION_LINE, bicep_files, shim
from tests.infra.conftest import INFRA, run_facts


def test_every_bicep_file_was_parsed(bicep_facts: dict[str, Any]) -> None:
    expected = {str(p.relative_to(INFRA)) for p in bicep_files(INFRA)}
    assert set(bicep_facts) == expected
    assert {"main.bicep", "app/function.bicep", "app/graph-permissions.bicep"} <= expected


def test_every_bicep_file_parses_without_errors(bicep_facts: dict[str, Any]) -> None:
    broken = {
        name: [f"{e['line']}:{e['column']} {e['text']!r}" for e in facts["errors"]] or ["(has_error)"]
        for name, facts in bicep_facts.items()
        if facts["has_error"]
    }
    assert broken == {}


def test_every_file_declares_something(bicep_facts: dict[str, Any]) -> None:
    for name, facts in bicep_facts.items():
        assert facts["resources"] or facts["modules"], f"{name} declares no resource or module"


def test_the_parser_catches_a_syntax_error(iac_python: Path, tmp_path: Path) -> None:
    (tmp_path / "broken.bicep").write_text("param name string\nresource x 'Microsoft.A/b@2020-01-01' = {\n")
    (tmp_path / "fine.bicep").write_text("param name string\noutput n string = name\n")
    facts = run_facts(iac_python, tmp_path)
    assert facts["broken.bicep"]["has_error"] is True
    assert facts["fine.bicep"]["has_error"] is False


def test_the_shim_rewrites_only_extension_statements() -> None:
    # Both parsers predate `extension <alias>`; the shim comments out exactly those lines.
    for path in bicep_files(INFRA):
        original = path.read_text().splitlines()
        shimmed, aliases = shim(path.read_text())
        changed = [(a, b) for a, b in zip(original, shimmed.splitlines(), strict=True) if a != b]
        assert len(changed) == len(aliases)
        for before, after in changed:
            assert EXTENSION_LINE.fullmatch(before)
            assert after == "// " + before
    assert shim("extension microsoftGraphV1\nparam a string\n") == (
        "// extension microsoftGraphV1\nparam a string\n",
        ["microsoftGraphV1"],
    )
    # not a statement: inside a string or indented
    assert shim("var s = 'extension x'\n  extension y\n")[1] == []
