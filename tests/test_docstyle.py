"""
The package's one docstring markup (tests/README.md, "Types and docstrings"):
reST, not epytext. Every docstring and comment of ``edgegw_tx`` (and the
twistd plugin) is read; epytext's inline markup (``C{}``, ``L{}``, ``I{}`` …)
or fields (``@param``, ``@return`` …) in any of them fails the test, naming
the file and line.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

from twisted.trial import unittest

ROOT = Path(__file__).resolve().parent.parent
# What the check reads: the package and the plugin twistd loads it by.
SOURCES = (ROOT / "edgegw_tx", ROOT / "twisted" / "plugins")
# Epytext's inline markup (code, link, italic, bold, URL, math) and its fields.
EPYTEXT = re.compile(
    r"\b[CLIBUM]\{[^{}\n]*\}"
    r"|^[ \t]*@(param|type|return|returns|rtype|raise|raises|ivar|cvar|var|note|see|since|keyword|kwarg)\b",
    re.MULTILINE,
)


def _docstrings(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """``(line, text)`` of every string that stands alone as a statement: docstrings, attribute docstrings."""
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            statements = getattr(node, field, None)
            for statement in statements if isinstance(statements, list) else ():
                if (
                    isinstance(statement, ast.Expr)
                    and isinstance(statement.value, ast.Constant)
                    and isinstance(statement.value.value, str)
                ):
                    yield statement.lineno, statement.value.value


def _comments(source: str) -> Iterator[tuple[int, str]]:
    """``(line, text)`` of every comment."""
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string


def epytext_in(source: str) -> list[tuple[int, str]]:
    """``(line, markup)`` of each piece of epytext in the docstrings and comments of ``source``."""
    found = []
    for line, text in [*_docstrings(ast.parse(source)), *_comments(source)]:
        for match in EPYTEXT.finditer(text):
            found.append((line + text.count("\n", 0, match.start()), match.group(0).strip()))
    return sorted(found)


def epytext_under(*roots: Path) -> list[str]:
    """``path:line: markup`` of each piece of epytext in the ``.py`` files under ``roots``."""
    return [
        f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line}: {markup}"
        for root in roots
        for path in sorted(root.rglob("*.py"))
        for line, markup in epytext_in(path.read_text(encoding="utf-8"))
    ]


class EpytextTests(unittest.SynchronousTestCase):
    """The check finds epytext where it is, and only there."""

    def test_finds_inline_markup_and_fields(self) -> None:
        """``C{}``, ``L{}``, ``I{}`` in a docstring or comment and ``@param``/``@return`` fields are found, by line."""
        source = (
            '"""\nSee L{IStore}.\n"""\n'
            "# C{twistd} runs it\n"
            "def f(x):\n"
            '    """\n    I{Why}.\n\n    @param x: a value\n    @return: nothing\n    """\n'
        )
        self.assertEqual(
            epytext_in(source),
            [(2, "L{IStore}"), (4, "C{twistd}"), (7, "I{Why}"), (9, "@param"), (10, "@return")],
        )

    def test_leaves_rest_and_code_alone(self) -> None:
        """reST markup, decorators, f-strings and format braces in code are not epytext."""
        source = (
            '"""``IStore`` with *emphasis*; :param x: a value; ``@implementer`` classes."""\n'
            "@decorator\n"
            'def f(x: str) -> str:\n'
            '    """A path like ``/a/{id}``: ``C`` and ``L`` alone are fine."""\n'
            '    return f"C{x}" + "L{}".format(x)\n'
        )
        self.assertEqual(epytext_in(source), [])


class PackageTests(unittest.SynchronousTestCase):
    """The package is written in the one markup."""

    def test_no_epytext_in_the_package(self) -> None:
        """No docstring or comment of ``edgegw_tx`` or the twistd plugin uses epytext: reST is the house style."""
        self.assertEqual(epytext_under(*SOURCES), [])
