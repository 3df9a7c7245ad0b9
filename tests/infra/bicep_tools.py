"""Offline tools for the Bicep templates in infra/: a syntax parse and the facts the contract tests read.

The Bicep CLI cannot be installed here, so the templates are checked with tree-sitter-bicep and
checkov, which live in their own venv (``.venv-iac``, requirements-iac.txt). The tests run in the app
venv and call this file as a script of the iac venv::

    .venv-iac/bin/python tests/infra/bicep_tools.py facts infra      # JSON on stdout
    .venv-iac/bin/python tests/infra/bicep_tools.py shim infra DEST  # copy for checkov

Both parsers predate the ``extension <alias>`` statement (Bicep 0.30+) that the Microsoft Graph
module needs. ``shim`` rewrites exactly that statement, and nothing else, into a comment on the same
line (line numbers are kept); the contract tests check the alias separately against bicepconfig.json.
This module imports tree-sitter only inside ``facts`` so the app venv can import the shim.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

# `extension microsoftGraphV1` alone on a line, at the top level of a file.
EXTENSION_LINE = re.compile(r"^extension[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]*$", re.MULTILINE)


def shim(text: str) -> tuple[str, list[str]]:
    """The text with each ``extension <alias>`` line turned into a comment, and the aliases found."""
    aliases = EXTENSION_LINE.findall(text)
    return EXTENSION_LINE.sub(lambda m: "// " + m.group(0), text), aliases


def bicep_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.bicep") if p.is_file())


def shim_tree(source: Path, dest: Path) -> dict[str, list[str]]:
    """Copy ``source`` to ``dest`` with every .bicep file shimmed; returns the aliases per file."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest)
    found: dict[str, list[str]] = {}
    for path in bicep_files(dest):
        text, aliases = shim(path.read_text(encoding="utf-8"))
        path.write_text(text, encoding="utf-8")
        if aliases:
            found[str(path.relative_to(dest))] = aliases
    return found


# --- facts (tree-sitter) ---------------------------------------------------------------------------

_ESCAPES = {"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\$": "$"}


def _text(node: Any, src: bytes) -> str:
    return src[node.start_byte : node.end_byte].decode("utf-8")


def _named(node: Any) -> list[Any]:
    return [c for c in node.named_children if c.type != "comment"]


def _value(node: Any, src: bytes) -> dict[str, Any]:
    """A JSON description of a Bicep expression: literals are decoded, anything else is kept as text."""
    kind = node.type
    if kind == "string":
        parts = [c for c in node.children if c.type not in ("'", "'''")]
        if any(c.type == "interpolation" for c in parts):
            return {"kind": "expr", "text": _text(node, src)}
        raw = "".join(_text(c, src) for c in parts)
        if not _text(node, src).startswith("'''"):
            raw = re.sub(r"\\(?:u\{[0-9A-Fa-f]+\}|.)", lambda m: _unescape(m.group(0)), raw)
        return {"kind": "string", "value": raw}
    if kind == "number":
        return {"kind": "number", "value": int(_text(node, src))}
    if kind == "boolean":
        return {"kind": "bool", "value": _text(node, src) == "true"}
    if kind == "object":
        entries: dict[str, Any] = {}
        for prop in _named(node):
            if prop.type != "object_property":
                continue
            key_node, *rest = _named(prop)
            key = _value(key_node, src)["value"] if key_node.type == "string" else _text(key_node, src)
            entries[key] = _value(rest[-1], src) if rest else {"kind": "expr", "text": ""}
        return {"kind": "object", "entries": entries}
    if kind == "array":
        return {"kind": "array", "items": [_value(c, src) for c in _named(node)]}
    if kind == "identifier":
        return {"kind": "identifier", "name": _text(node, src)}
    return {"kind": "expr", "text": _text(node, src)}


def _unescape(seq: str) -> str:
    if seq.startswith("\\u{"):
        return chr(int(seq[3:-1], 16))
    return _ESCAPES.get(seq, seq)


def _errors(node: Any, src: bytes, found: list[dict[str, Any]]) -> None:
    if node.type == "ERROR" or node.is_missing:
        line, column = node.start_point
        found.append({"line": line + 1, "column": column + 1, "text": _text(node, src)[:80]})
    for child in node.children:
        _errors(child, src, found)


def file_facts(path: Path, parser: Any) -> dict[str, Any]:
    text, aliases = shim(path.read_text(encoding="utf-8"))
    src = text.encode("utf-8")
    tree = parser.parse(src)
    root = tree.root_node
    errors: list[dict[str, Any]] = []
    _errors(root, src, errors)
    facts: dict[str, Any] = {
        "has_error": root.has_error,
        "errors": errors,
        "extensions": aliases,
        "target_scope": None,
        "params": {},
        "variables": {},
        "variable_lines": {},
        "resources": [],
        "modules": [],
        "outputs": [],
    }
    for decl in _named(root):
        children = _named(decl)
        if decl.type == "target_scope_assignment":
            facts["target_scope"] = _value(children[-1], src).get("value")
        elif decl.type == "parameter_declaration":
            name = _text(children[0], src)
            default = children[2] if len(children) > 2 else None
            facts["params"][name] = {
                "type": _text(children[1], src),
                "default": _value(default, src) if default is not None else None,
            }
        elif decl.type == "variable_declaration":
            name = _text(children[0], src)
            facts["variables"][name] = _value(children[-1], src)
            facts["variable_lines"][name] = decl.start_point[0] + 1
        elif decl.type == "resource_declaration":
            facts["resources"].append(
                {
                    "symbol": _text(children[0], src),
                    "type": _value(children[1], src).get("value"),
                    "existing": any(c.type == "existing" for c in decl.children),
                    "line": decl.start_point[0] + 1,
                }
            )
        elif decl.type == "module_declaration":
            facts["modules"].append({"symbol": _text(children[0], src), "path": _value(children[1], src).get("value")})
        elif decl.type == "output_declaration":
            facts["outputs"].append(_text(children[0], src))
    return facts


def facts(root: Path) -> dict[str, Any]:
    import tree_sitter
    import tree_sitter_bicep

    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))
    return {str(p.relative_to(root)): file_facts(p, parser) for p in bicep_files(root)}


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "facts":
        json.dump(facts(Path(argv[1])), sys.stdout, indent=1, sort_keys=True)
        return 0
    if len(argv) == 3 and argv[0] == "shim":
        json.dump(shim_tree(Path(argv[1]), Path(argv[2])), sys.stdout)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
