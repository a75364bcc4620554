"""The documentation site (docs/) builds with warnings as errors, every relative link of the built pages resolves,
and every Python block of the pages runs (a tiny model built in code stands in for the models and data sets the
pages name) or says, right above it, why it is not run::

    python -m pytest tests/test_docs.py

A Python block followed by ``<!-- output -->`` and a fenced block must print exactly that block. A block preceded by
``<!-- not run: <reason> -->`` is skipped; the reason must be given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import io
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
FRONT_PAGE = ROOT / "README.md"  # the repository's front page: not part of the site, its code must run too
PAGES = sorted(DOCS.rglob("*.md"))  # the pages of the site
NOT_RUN = re.compile(r"^<!-- not run: (?P<reason>.+?) -->$")
OUTPUT_MARK = "<!-- output -->"


@dataclasses.dataclass
class CodeBlock:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    source: str
    not_run: str | None = None  # the reason, for a block marked as not run
    output: str | None = None  # what it must print, when an output block follows it


def code_blocks(page: Path) -> list[CodeBlock]:
    """The fenced blocks of a Markdown page, with their not-run reasons and expected outputs."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[CodeBlock] = []
    index = 0
    while index < len(lines):
        fence = re.match(r"^(`{3,})(\S*)", lines[index])
        if not fence:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith(fence.group(1)))
        before = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        reason = NOT_RUN.match(before.strip())
        block = CodeBlock(page, index + 1, fence.group(2), "\n".join(lines[index + 1 : end]) + "\n")
        block.not_run = reason.group("reason") if reason else None
        after = next((i for i in range(end + 1, len(lines)) if lines[i].strip()), None)
        if block.language == "python" and after is not None and lines[after].strip() == OUTPUT_MARK:
            output_start = after + 1
            output_fence = re.match(r"^(`{3,})", lines[output_start])
            assert output_fence, f"{page}:{output_start + 1}: {OUTPUT_MARK} must be followed by a fenced block"
            output_end = next(i for i in range(output_start + 1, len(lines)) if lines[i].startswith(output_fence[1]))
            block.output = "\n".join(lines[output_start + 1 : output_end])
            end = output_end
        blocks.append(block)
        index = end + 1
    return blocks


def python_pages() -> list[Path]:
    """The pages with a Python block to run (a page whose every block is marked not run has nothing to test)."""
    pages = [*PAGES, FRONT_PAGE]
    return [page for page in pages if any(b.language == "python" and b.not_run is None for b in code_blocks(page))]


# ---- the build ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built as CI builds it: ``sphinx-build -W --keep-going`` (any warning fails), in a fresh folder."""
    try:
        import latex2mathml  # noqa: F401
        import myst_parser  # noqa: F401
        import sphinx  # noqa: F401
    except ImportError as error:
        if os.environ.get("CI"):
            raise  # CI installs ".[test]", which includes ".[docs]": a missing toolchain is a failure there
        pytest.skip(f'the docs toolchain is not installed ({error}); pip install -e ".[docs]"')
    out = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    command += ["-d", str(out / ".doctrees"), str(DOCS), str(out / "html")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"the docs build failed or warned:\n{result.stdout}\n{result.stderr}"
    return out / "html"


def test_the_site_builds_strictly(site: Path):
    assert (site / "index.html").is_file()


class _Links(HTMLParser):
    """Every href/src of a page, and every id it defines."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.links.append(value)
            if name in ("id", "name") and value:
                self.ids.add(value)


def _parsed(page: Path, cache: dict[Path, _Links]) -> _Links:
    if page not in cache:
        parser = _Links()
        parser.feed(page.read_text(encoding="utf-8"))
        cache[page] = parser
    return cache[page]


def test_every_relative_link_of_the_built_site_resolves(site: Path):
    pages: dict[Path, _Links] = {}
    broken = []
    html_pages = sorted(site.rglob("*.html"))
    assert len(html_pages) > 15
    for page in html_pages:
        for link in _parsed(page, pages).links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "javascript:", "data:")):
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page.relative_to(site)}: {link} (no file)")
            elif (
                parts.fragment
                and target.suffix == ".html"
                and unquote(parts.fragment) not in _parsed(target, pages).ids
            ):
                broken.append(f"{page.relative_to(site)}: {link} (no such anchor)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_field_of_the_arguments_has_a_row_in_the_generated_table(site: Path):
    """One row per field DPOTrainingArguments declares, none twice, each with its help."""
    from transformers import TrainingArguments

    from hf_dpo import DPOTrainingArguments

    table = (site / "api" / "arguments.html").read_text(encoding="utf-8")
    text = html.unescape(re.sub(r"<[^>]+>", "", table)).replace("\u2019", "'")  # Sphinx writes ' as a curly quote
    declared = vars(DPOTrainingArguments)["__annotations__"]
    base = {field.name for field in dataclasses.fields(TrainingArguments)}
    fields = [field for field in dataclasses.fields(DPOTrainingArguments) if field.name in declared]
    assert {field.name for field in fields} >= {"beta", "loss_type", "max_length"}
    assert {field.name for field in fields} >= set(declared) - base
    own_table = table.split('<section id="ktoconfig">', 1)[0]  # DPOTrainingArguments' table, before KTOConfig's
    first_cells = re.findall(r'<tr[^>]*>\s*<td><p><code class="[^"]*"><span class="pre">(\w+)</span>', own_table)
    assert len(first_cells) == len(set(first_cells)), (
        f"listed twice: {sorted({n for n in first_cells if first_cells.count(n) > 1})}"
    )
    assert set(first_cells) == {field.name for field in fields}
    for field in fields:
        first_words = " ".join(field.metadata["help"].replace("`", "").split()[:3])
        assert first_words in text, f"{field.name}'s help is not in its row"


def test_the_formulas_are_mathml(site: Path):
    """The losses page carries its formulas as MathML (no script needed), and no raw LaTeX is left on it."""
    page = (site / "losses.html").read_text(encoding="utf-8")
    assert page.count("<math") > 25
    assert "\\sigma" not in re.sub(r"<annotation.*?</annotation>", "", page, flags=re.DOTALL)


# ---- what the pages say ------------------------------------------------------------------------------------------


def test_every_registered_loss_has_a_row_in_the_losses_table():
    from hf_dpo.losses import registered_loss_types

    text = (DOCS / "losses.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (`[a-z_]+`(?:, `[a-z_]+`)*)", text, flags=re.MULTILINE)
    documented = {name for row in rows for name in re.findall(r"`([a-z_]+)`", row)}
    assert set(registered_loss_types()) <= documented, set(registered_loss_types()) - documented


def test_the_layout_page_lists_every_folder_in_its_floor_order():
    """Both the one-line overview and the sections of api/layout.md name every folder of hf_dpo/, in the order of the
    import rules' floors (bottom first)."""
    from test_import_rules import FLOORS

    page = (DOCS / "api" / "layout.md").read_text()
    overview = page.split("```", 2)[1]
    in_overview = [line.split()[0] for line in overview.splitlines() if line.startswith("hf_dpo/")]
    assert in_overview == [f"hf_dpo/{folder}/" for folder in FLOORS]
    sections = re.findall(r"^\.\. automodule:: hf_dpo\.(\w+)$", page, re.MULTILINE)
    assert sections == list(FLOORS)


def test_every_path_the_pages_name_exists():
    """`tests/...`, `hf_dpo/...`, `recipes/...` and `benchmarks/...` named in backticks (a test's ::name aside)."""
    missing = []
    for page in [*PAGES, FRONT_PAGE]:
        for path in re.findall(r"`((?:tests|hf_dpo|recipes|benchmarks|docs)/[\w./*-]*)", page.read_text()):
            path = path.split("::")[0].rstrip(".")
            if not any(ROOT.glob(path)) and not (ROOT / path).exists():
                missing.append(f"{page.relative_to(ROOT)}: {path}")
    assert not missing, "\n".join(missing)


def test_the_readme_is_a_short_front_page_whose_links_resolve():
    """README.md is the front page: under 150 lines, linking into the site; its relative links are read from the
    repository's root."""
    text = FRONT_PAGE.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 150
    links = [link for link in re.findall(r"\]\(([^)#\s]+)", text) if "://" not in link]
    assert len(links) > 10
    assert not [link for link in links if not (ROOT / link).exists()]


def test_a_block_marked_as_not_run_says_why():
    for page in [*PAGES, FRONT_PAGE]:
        for block in code_blocks(page):
            if block.not_run is not None:
                assert len(block.not_run.split()) >= 4, f"{page}:{block.line}: give the reason a block is not run"


# ---- the Python blocks -------------------------------------------------------------------------------------------


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Models, tokenizers and data sets named on the pages, as tiny ones built in code; pushes recorded, not sent.
    The blocks run in a fresh folder (they write output_dir)."""
    import datasets
    import transformers
    from tiny import build_model, build_tokenizer, preference_rows

    from hf_dpo.losses import registry

    def tiny_model(name: str, *args, **kwargs):
        model = build_model(build_tokenizer())
        model.config._name_or_path = name
        return model

    def tiny_dataset(*args, **kwargs):
        return datasets.DatasetDict(
            train=datasets.Dataset.from_list(preference_rows(8)), test=datasets.Dataset.from_list(preference_rows(4))
        )

    pushes: list[str] = []
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", tiny_model)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *args, **kwargs: build_tokenizer())
    monkeypatch.setattr(datasets, "load_dataset", tiny_dataset)
    from hf_dpo.trainer.trainer import DPOTrainer

    monkeypatch.setattr(DPOTrainer, "push_to_hub", lambda self, *args, **kwargs: pushes.append(self.args.output_dir))
    monkeypatch.setitem(os.environ, "WANDB_DISABLED", "true")
    monkeypatch.chdir(tmp_path)
    # a page may register a loss: the registry is left as it was found
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return pushes


@pytest.mark.parametrize("page", python_pages(), ids=lambda page: str(page.relative_to(ROOT)))
def test_every_python_block_of_the_page_runs(page: Path, stand_ins: list[str]):
    """The page's Python blocks run in order in one namespace, as a reader would paste them."""
    namespace: dict[str, object] = {"__name__": "__docs__"}
    ran = 0
    for block in code_blocks(page):
        if block.language != "python" or block.not_run is not None:
            continue
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(block.source, f"{page.relative_to(ROOT)}:{block.line}", "exec"), namespace)
        if block.output is not None:
            got = "\n".join(line.rstrip() for line in printed.getvalue().rstrip("\n").splitlines())
            assert got == block.output.rstrip("\n"), f"{page.name}:{block.line} printed:\n{got}"
        ran += 1
    assert ran, f"{page.name}: no block ran"


# A number still to be measured is written as ⟪NAME⟫ (or NAME_DATE / NAME_TABLE / NAME_NOTE) while a page is drafted:
# none may reach a reader.
PLACEHOLDER = re.compile(r"⟪[^⟫]*⟫|\b[A-Z]+_(?:DATE|TABLE|NOTE)\b")


def test_no_page_shows_a_number_still_to_be_measured():
    unfilled = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()[:80]}"
        for path in [FRONT_PAGE, *PAGES, ROOT / "benchmarks" / "RESULTS.md"]
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if PLACEHOLDER.search(line)
    ]
    assert not unfilled, "\n".join(unfilled)
