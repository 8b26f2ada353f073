"""The documentation: README.md stays short, docs/ builds with no warning, and no page
carries a path of one machine or an issue number."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
RESULTS = REPO / "benchmarks" / "RESULTS.md"

#: A newcomer reads the README in five minutes; everything else lives in docs/.
README_MAX_LINES = 320

#: Paths of a development machine (examples use relative paths such as demo-out/dataset)
#: and issue numbers (the docs state what is measured, not which ticket asked for it).
FORBIDDEN = [
    (re.compile(re.escape(fragment)), f"the path fragment {fragment!r}")
    for fragment in ("/work/", "/tmp/", "/root/")
] + [(re.compile(r"\bissue \d+", re.IGNORECASE), "an issue number")]


def documentation_files() -> list[Path]:
    # docs/benchmarks.md links to benchmarks/RESULTS.md; both names are checked.
    return [README, RESULTS, *sorted(DOCS.rglob("*.md"))]


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md should have at most {README_MAX_LINES} lines (move detail into docs/); "
        f"it has {len(lines)}"
    )


def test_no_machine_paths_or_issue_numbers() -> None:
    problems = []
    for path in documentation_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for pattern, what in FORBIDDEN:
                match = pattern.search(line)
                if match:
                    problems.append(
                        f"{path.relative_to(REPO)}:{number}: {what} ({match.group(0)!r})")
    assert not problems, (
        "expected relative paths and no issue numbers in the README and docs; found:\n"
        + "\n".join(problems)
    )


def test_benchmarks_page_is_the_results_file() -> None:
    page = DOCS / "benchmarks.md"
    assert page.is_file(), "expected docs/benchmarks.md (a link to benchmarks/RESULTS.md)"
    assert page.read_bytes() == RESULTS.read_bytes(), (
        "expected docs/benchmarks.md to be benchmarks/RESULTS.md (one source for the "
        "benchmark tables); the two differ"
    )


def test_docs_build_strict(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[dev]'; `make test` does)")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict",
         "--config-file", str(REPO / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, (
        "expected `mkdocs build --strict` to finish with no warning; it exited "
        f"{result.returncode}:\n{result.stdout}{result.stderr}"
    )
    assert (tmp_path / "site" / "index.html").is_file()
