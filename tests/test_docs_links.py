"""
The user documentation stands on its own: every relative link in README.md
and docs/**/*.md reaches a file of the repository, and every ``#anchor`` a
heading of the page it names (GitHub's heading ids). The README's layout
table names only paths that exist. A dead link fails the test, naming the
page, its line and the target.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

from twisted.trial import unittest

ROOT = Path(__file__).resolve().parent.parent
# The pages users read: what the check covers.
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")))

# ``[text](target)`` and ``[text](target "title")``; the text may span lines.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^()\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# ``[label]: target`` reference definitions.
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.MULTILINE)
FENCE = re.compile(r"^ {0,3}(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
# A code span that names a Markdown page: ``docs/ipc.md``, ``services.md#errors``.
PAGE_NAME = re.compile(r"[\w.\-]+(?:/[\w.\-]+)*\.md(?:#[\w\-]+)?")


def _without_fences(text: str) -> str:
    """``text`` with fenced blocks blanked (kept as empty lines, so line numbers hold)."""
    lines = []
    fence: str | None = None
    for line in text.split("\n"):
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
            lines.append("")
        elif fence is not None:
            if match and match.group(1) == fence:
                fence = None
            lines.append("")
        else:
            lines.append(line)
    return "\n".join(lines)


def _blank_code(text: str) -> str:
    """``text`` with fenced blocks and code spans blanked (kept as spaces, so line numbers hold)."""
    return CODE_SPAN.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), _without_fences(text))


def slug(heading: str) -> str:
    """The id GitHub gives a heading: its text without markup, lower case, punctuation dropped, spaces to ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML goes
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The ids of a page's headings (repeated headings get ``-1``, ``-2`` ...) and of its explicit ``id``s."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    fence: str | None = None
    for line in text.split("\n"):
        match = FENCE.match(line)
        if match and (fence is None or match.group(1) == fence):
            fence = match.group(1) if fence is None else None
            continue
        heading = HEADING.match(line) if fence is None else None
        if heading:
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    found.update(re.findall(r"""\b(?:id|name)=["']([^"']+)["']""", text))
    return found


def links(text: str) -> Iterator[tuple[int, str]]:
    """``(line, target)`` of every link of a page outside code."""
    prose = _blank_code(text)
    for pattern in (INLINE_LINK, REFERENCE):
        for match in pattern.finditer(prose):
            yield prose.count("\n", 0, match.start(1)) + 1, match.group(1)


def named_pages(text: str) -> Iterator[tuple[int, str]]:
    """``(line, name)`` of every code span of a page that names a Markdown page."""
    prose = _without_fences(text)
    for match in CODE_SPAN.finditer(prose):
        if PAGE_NAME.fullmatch(match.group(2).strip()):
            yield prose.count("\n", 0, match.start()) + 1, match.group(2).strip()


def dead_links(page: Path, root: Path = ROOT) -> list[str]:
    """``page:line: target (why)`` for each relative link of ``page`` (under ``root``) that reaches nothing."""
    text = page.read_text(encoding="utf-8")
    targets = [(line, target, page.parent) for line, target in links(text)]
    for line, name in named_pages(text):
        # A named page is the repository's (``docs/cli.md``) or a neighbour (``services.md``).
        base = root if (root / name.partition("#")[0]).exists() else page.parent
        targets.append((line, name, base))
    dead = []
    for line, target, base in sorted(targets):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("//"):
            continue  # absolute (http:, mailto: ...): not the repository's
        path_part, _, fragment = target.partition("#")
        where = f"{page.relative_to(root)}:{line}: {target}"
        resolved = (base / unquote(path_part)).resolve() if path_part else page
        if not resolved.is_relative_to(root):
            dead.append(f"{where} (outside the repository)")
        elif not resolved.exists():
            dead.append(f"{where} (no such file)")
        elif fragment and resolved.suffix == ".md" and unquote(fragment) not in anchors(resolved.read_text(encoding="utf-8")):
            dead.append(f"{where} (no heading #{fragment})")
    return dead


def broken_tables(text: str) -> list[int]:
    """Lines of table rows that follow a table and a blank line with no header of their own: a cut table."""
    lines = _without_fences(text).split("\n")
    return [
        number + 1
        for number, line in enumerate(lines)
        if number >= 2
        and line.startswith("|")
        and not lines[number - 1].strip()
        and lines[number - 2].startswith("|")
        and not (number + 1 < len(lines) and re.match(r"^\|\s*:?-{3,}", lines[number + 1]))
    ]


def layout_paths(readme: str) -> list[str]:
    """The first column of the README's ``## Layout`` table: the paths it names."""
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return [
        cell.group(1)
        for cell in re.finditer(r"^\|\s*`([^`]+)`\s*\|", section, re.MULTILINE)
    ]


class CheckTests(unittest.SynchronousTestCase):
    """The check finds what is dead, and only that."""

    def test_slug_follows_github(self) -> None:
        """A heading's id drops markup and punctuation and joins words with ``-``, as GitHub's does."""
        self.assertEqual(slug("`Storage`: documents"), "storage-documents")
        self.assertEqual(slug("The frames (for the gateway's side)"), "the-frames-for-the-gateways-side")
        self.assertEqual(slug("Draining before a stop: `--shutdown-delay`"), "draining-before-a-stop---shutdown-delay")

    def test_dead_file_and_anchor_found(self) -> None:
        """A link to a missing file, to a missing heading and to outside the repository is each found, by line."""
        root = Path(self.mktemp()).resolve()
        (root / "docs").mkdir(parents=True)
        page = root / "docs" / "page.md"
        page.write_text(
            "# Title\n\n## A `b` c\n\n[ok](#a-b-c) [self](page.md#title)\n"
            "[gone](nope.md)\n[no anchor](#missing) [far](../../x.md)\n"
            "```\n[in code](nope2.md)\n```\n`[span](nope3.md)` [web](https://example.com/x.md)\n",
            encoding="utf-8",
        )
        self.assertEqual(
            dead_links(page, root),
            [
                "docs/page.md:6: nope.md (no such file)",
                "docs/page.md:7: #missing (no heading #missing)",
                "docs/page.md:7: ../../x.md (outside the repository)",
            ],
        )

    def test_named_pages_checked(self) -> None:
        """A page named in code is checked from the root or the page's directory; other code is not a link."""
        root = Path(self.mktemp()).resolve()
        (root / "docs" / "sdk").mkdir(parents=True)
        (root / "docs" / "ipc.md").write_text("# IPC\n\n## Frames\n", encoding="utf-8")
        page = root / "docs" / "sdk" / "README.md"
        page.write_text(
            "The contract is `spec/SDK.md`; the protocol `docs/ipc.md#frames`,\n"
            "this page `README.md`, not `docs/ipc.md#nothing` or `../ipc.md`; `src/main.rs` is no page.\n"
            "```\n`spec/IPC.md`\n```\n",
            encoding="utf-8",
        )
        self.assertEqual(
            dead_links(page, root),
            [
                "docs/sdk/README.md:1: spec/SDK.md (no such file)",
                "docs/sdk/README.md:2: docs/ipc.md#nothing (no heading #nothing)",
            ],
        )

    def test_link_text_over_lines(self) -> None:
        """A link whose text spans lines is still read, at the line of its target."""
        self.assertEqual(list(links("see [the\nprotocol](ipc.md).\n")), [(2, "ipc.md")])

    def test_repeated_heading_ids(self) -> None:
        """A repeated heading gets ``-1``; a ``#`` line in a fenced block is no heading."""
        self.assertEqual(anchors("# A\n## A\n```\n# B\n```\n"), {"a", "a-1"})


    def test_cut_table_found(self) -> None:
        """A row after a blank line that ends a table is found; a new table with its own header is not."""
        text = "| a | b |\n| --- | --- |\n| 1 | 2 |\n\n| 3 | 4 |\n\n| c | d |\n| --- | --- |\n| 5 | 6 |\n"
        self.assertEqual(broken_tables(text), [5])


class DocsTests(unittest.SynchronousTestCase):
    """README.md and docs/ link only to what exists."""

    def test_no_dead_links(self) -> None:
        """Every relative link and anchor in README.md and docs/**/*.md reaches a file and heading of the repository."""
        dead = [entry for page in PAGES for entry in dead_links(page)]
        self.assertEqual(dead, [], "dead links:\n" + "\n".join(dead))

    def test_no_cut_tables(self) -> None:
        """No table in README.md or docs/ is cut in two by a blank line (the rows after it would show as text)."""
        cut = [
            f"{page.relative_to(ROOT)}:{line}"
            for page in PAGES
            for line in broken_tables(page.read_text(encoding="utf-8"))
        ]
        self.assertEqual(cut, [])

    def test_layout_table_paths_exist(self) -> None:
        """Every path in the README's layout table exists (a directory where it ends in ``/``)."""
        paths = layout_paths((ROOT / "README.md").read_text(encoding="utf-8"))
        self.assertTrue(paths)
        wrong = [
            path
            for path in paths
            if not (ROOT / path).exists() or path.endswith("/") != (ROOT / path).is_dir()
        ]
        self.assertEqual(wrong, [])
