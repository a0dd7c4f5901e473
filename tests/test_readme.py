"""The README and the docs/ pages: the README's two set-up commands (CI runs the test command verbatim; the main job
command is the CLI's default), the README stays short and links every docs page, every page links back, every
relative link and picture resolves, and the README's headline numbers are on the results page.

Plain text only (no torch, no hf_rtp): these checks hold whatever state the package is in."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
README_MAX_LINES = 300


def doc_text(name: str) -> str:
    """The text of README.md (`name="README.md"`) or of a docs/ page (`"results.md"`)."""
    return (README if name == "README.md" else ROOT / "docs" / name).read_text()


def section(text: str, heading: str) -> str:
    """The text of the `## heading` section, up to the next `## ` heading."""
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def setup_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", section(doc_text("README.md"), "Set up"))


def without_code(text: str) -> str:
    """Markdown text without fenced code blocks and inline code spans (their brackets are no links)."""
    text = re.sub(r"(?ms)^```.*?^```[ \t]*$", "", text)
    return re.sub(r"`[^`\n]*`", "", text)


def links(text: str) -> list[str]:
    """The targets of every link and picture, `[text](target)` and `![alt](target)`, outside code."""
    return re.findall(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", without_code(text))


def anchors(text: str) -> set[str]:
    """The #anchors GitHub gives the headings: lower case, punctuation dropped, spaces as hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"(?m)^#{1,6}\s+(.+?)\s*#*\s*$", re.sub(r"(?ms)^```.*?^```[ \t]*$", "", text)):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    commands = setup_commands()
    assert len(commands) == 2, commands
    main_job, tests = commands
    assert main_job.endswith("HF_HUB_OFFLINE=1 hf-rtp") and tests.endswith("HF_HUB_OFFLINE=1 pytest")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci, "the README's test command must be the line .ci/run runs"


def test_readme_is_short():
    lines = len(doc_text("README.md").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move detail to a docs/ page"


def test_every_docs_page_is_linked_from_the_readme_and_links_back_and_to_the_others():
    assert DOCS, "no docs/*.md"
    readme_links = {target.split("#")[0] for target in links(doc_text("README.md"))}
    for page in DOCS:
        assert f"docs/{page.name}" in readme_links, f"the README does not link docs/{page.name}"
        targets = {target.split("#")[0] for target in links(page.read_text())}
        assert "../README.md" in targets, f"docs/{page.name} does not link back to the README"
        others = {other.name for other in DOCS if other != page}
        assert others <= targets, f"docs/{page.name}'s see-also list misses {sorted(others - targets)}"


def test_every_relative_link_and_picture_resolves():
    broken = []
    for page in [README, *DOCS]:
        for target in links(page.read_text()):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...: not checked offline
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)}: {target}"
            if not file.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
                broken.append(f"{where} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_headline_numbers_are_on_the_results_page():
    """The README's results table is static text: each of its numbers must still be in a table of docs/results.md."""
    headline = re.findall(r"\d+\.\d+ \+- \d+\.\d+%", section(doc_text("README.md"), "Results"))
    assert len(headline) >= 4, headline
    results = doc_text("results.md")
    assert not [n for n in headline if n not in results], "update the README's headline table from docs/results.md"
    assert "docs/results.md" in links(section(doc_text("README.md"), "Results"))


def test_every_python_block_in_the_readme_and_docs_parses():
    for page in [README, *DOCS]:
        for block in re.findall(r"(?ms)^```python\n(.*?)^```", page.read_text()):
            ast.parse(block, filename=str(page.relative_to(ROOT)))
