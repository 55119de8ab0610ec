"""Comments and docs name only files that exist, and no machine's own folders.

A comment that cites `tests/unit/<name>.py` or `docs/<page>.md` sends a newcomer to look
for it; when the file was renamed or never written, the comment misleads from then on. So every
tracked .py/.md/.yaml/.toml file, the Makefile and the Dockerfile is scanned for paths:
- repository-relative ones (beginning with a top-level folder of the tree, or with a package
  name such as `wft_api/`, which lives under operator/, trainer/ or local/), which must exist;
- relative ones (`../<folder>/<page>.md`, as Markdown links write them), which must exist beside the file
  or from the root;
- absolute paths of a developer's or a CI machine's own folders (the home and work folders,
  a source file under /tmp), which mean nothing anywhere else.
In .py files only comments and docstrings are read: code that names a path fails by itself.
Not paths: URLs and `s3://` keys (a path must not continue a word, a URL or a key), container
paths such as /opt/venv or /cache, placeholders (`<name>`, `{x}`, `$VAR`, `...`), globs
(matched as globs).
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import tokenize
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml"}
SCANNED_NAMES = {"Makefile", "Dockerfile"}
# Where each package's folder is (a docstring may say `wft_api/crd.py`).
PACKAGE_HOMES = {"wft_api": "operator", "wft_operator": "operator", "wft_cli": "operator",
                 "wft_trainer": "trainer", "wft_local": "local"}  # fmt: skip
# The start of a path may not continue a word, another path, a URL or an S3 key.
_NOT_AFTER = r"(?<![\w./:@~$-])"
# Folders of a machine, not of the project: a user's home, a work or scratch folder.
_MACHINE = re.compile(_NOT_AFTER + r"/(?:home|root|Users|work|mnt|scratch|workspace)/[\w.-]+")
# A source file under /tmp (a temp folder named as where code lives). /tmp itself, as code and
# commands use it for scratch space (/tmp/work, /tmp/site), is fine.
_TMP_SOURCE = re.compile(_NOT_AFTER + r"/tmp/[\w./-]*\.(?:py|md|ya?ml|toml|sh|txt|json)\b")
_RELATIVE = re.compile(_NOT_AFTER + r"((?:\.\./)+[\w.-]+(?:/[\w.*-]+)*/?)")
_PATH_CHARS = r"(?:[\w.*/-]|\{[\w.,-]*\})*"  # with shell braces: run{11,12}-*.json
_MARKDOWN_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [
        ROOT / name
        for name in out.split("\0")
        if name and (Path(name).suffix in SCANNED_SUFFIXES or Path(name).name in SCANNED_NAMES)
    ]


def _top_level() -> set[str]:
    names = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return {n.split("/", 1)[0] for n in names if "/" in n}


_TOPS = sorted(_top_level() | set(PACKAGE_HOMES), key=len, reverse=True)
_ROOTED = re.compile(
    _NOT_AFTER + r"((?:" + "|".join(map(re.escape, _TOPS)) + r")/" + _PATH_CHARS + ")"
)


def prose(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of what the file says to a reader: all of it, or for Python its
    comments and docstrings."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix != ".py":
        yield from enumerate(text.splitlines(), 1)
        return
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                for offset, line in enumerate(first.value.value.splitlines()):
                    yield first.lineno + offset, line


def _placeholder(cited: str) -> bool:
    # `{name}` is a placeholder; `{11,12}` is a shell expansion, checked one by one.
    return "..." in cited or any(c in cited for c in "<>$") or bool(re.search(r"\{[^,]*\}", cited))


def _expand(cited: str) -> list[str]:
    """`a{1,2}b` -> [a1b, a2b], as the shell expands braces."""
    match = re.search(r"\{([^{}]*)\}", cited)
    if not match:
        return [cited]
    head, tail = cited[: match.start()], cited[match.end() :]
    return [x for part in match.group(1).split(",") for x in _expand(head + part + tail)]


def _inside(path: Path) -> bool:
    return path.resolve().is_relative_to(ROOT)


def _exists(cited: str, base: Path) -> bool:
    """Every expansion of `cited` names something in the repository, from `base`."""
    for one in _expand(cited):
        if not _inside(base / one):
            return False
        if any(c in one for c in "*?["):
            if not any(base.glob(one)):
                return False
        elif not (base / one).exists():
            return False
    return True


def _rooted(cited: str) -> Path:
    top = cited.split("/", 1)[0]
    return ROOT / PACKAGE_HOMES[top] if top in PACKAGE_HOMES else ROOT


def problems_in(path: Path) -> list[str]:
    where = path.relative_to(ROOT)
    found: list[str] = []
    for number, line in prose(path):
        for match in [*_MACHINE.finditer(line), *_TMP_SOURCE.finditer(line)]:
            found.append(f"{where}:{number}: {match.group(0)} is a path on one machine")
        for match in _ROOTED.finditer(line):
            cited = match.group(1).rstrip(".,:;")
            if "/" not in cited.rstrip("/") and cited.rstrip("/") in PACKAGE_HOMES:
                continue  # `wft_api/` alone: the package, named as a folder
            if not _placeholder(cited) and not _exists(cited, _rooted(cited)):
                found.append(f"{where}:{number}: {cited} does not exist")
        relative = [m.group(1) for m in _RELATIVE.finditer(line)]
        if path.suffix == ".md":
            relative += [m.group(1) for m in _MARKDOWN_LINK.finditer(line)]
        for cited in relative:
            cited = cited.rstrip(".,:;")
            if re.match(r"^[a-z]+:", cited) or _placeholder(cited):
                continue  # a URL (https:, mailto:), or a placeholder
            if cited.startswith("/") or (cited.startswith("../") and "/" not in cited[3:]):
                continue  # an absolute link; `../x` alone (a traversal example, not a file)
            if _exists(cited, path.parent):
                continue
            # Written from the root, or from the file's folder: either way not in the tree.
            outside = not _inside(path.parent / cited) or not _inside(ROOT / cited)
            what = "lies outside the repository" if outside else "does not exist"
            found.append(f"{where}:{number}: {cited} {what}")
    return found


def test_the_scanner_sees_what_it_is_meant_to_see() -> None:
    """It finds the kinds of citation it exists for, and lets the look-alikes be."""
    sample = ROOT / "tests" / "unit" / "_repo_paths_sample.py"
    bad = [
        "# tests/unit/test_api_cel.py evaluates them",  # a test that does not exist
        "# as ../shared/device/README.md saw on an H100",  # a folder beside the repository
        "# see " + "/" + "work/main/operator/wft_api/crd.py",  # one machine's checkout
        "# copied from /tmp/scratch/render.py",  # a temp folder as a source location
        'def f() -> None:  """The model (wft_api/no_such_module.py)."""',  # package-relative
    ]
    fine = [
        "# tests/unit/test_api_validate.py evaluates them; see docs/operator.md and charts/",
        "# s3://bucket/docs/x.md and https://example.com/tests/unit/x.py are not ours",
        "# /tmp/work, /opt/venv and /cache/hf are scratch and container paths",
        "# keys that would escape root (../x) are refused; charts/... and <name>/x.py",
        '"""wft_api/crd.py generates crds/*.yaml."""',
        "# docs/gpu-runs/2026-11-24-run{11,12}-*results.json, docs/{page}.md",
    ]
    try:
        sample.write_text("\n".join(fine + bad) + "\n")
        found = problems_in(sample)
    finally:
        sample.unlink()
    assert [int(p.split(":")[1]) for p in found] == list(
        range(len(fine) + 1, len(fine) + len(bad) + 1)
    ), found


def test_comments_and_docs_name_only_paths_that_exist() -> None:
    problems = [p for path in tracked_files() if path.exists() for p in problems_in(path)]
    assert not problems, "\n".join(problems)
