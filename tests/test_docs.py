"""The documentation as a product: every example in it runs, generated pages do not drift, the README stays a front page.

Examples that cannot rot: every ```bash and ```python block in README.md, the site's pages
(docs/) and the model cards (exports/*.md) runs here as a real shell or interpreter. A
page's blocks run in order, in one fresh folder that looks like a clone to them: the
shipped models in exports/, the project's virtualenv as .venv (and first on PATH), and
MNIST found through GANKIT_DATA from the local copy (`GANKIT_TEST_MNIST`, by default
../shared/data/mnist). The network is never used: the download mirrors point at a closed
port on 127.0.0.1 and the user cache is empty, so `--data mnist` either finds the local
copy or fails.

A block that cannot run here carries, just above it, a mark that says why:

* ``<!-- docs-test: skip: REASON -->`` leaves it out (a GPU, the network, a long run);
* ``<!-- docs-test: append "ARGS" to "PREFIX": REASON -->`` runs it with ARGS added to each
  command that starts with PREFIX (before any trailing comment). Pages show the command
  users type, for example a full-length `gankit train`; the test adds `--steps 40`, which
  only moves the point where the run stops. This shortening is the only change the test
  makes to a command, and the mark on the page says so.

Pages owned by other tests (serving: tests/test_serve_docs.py runs its curl examples
against a real server; the plugin guide: tests/test_plugin_contract.py) are checked to
still be covered there. Pages that train are marked slow.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import REPO, mnist_data_root

VENV = REPO / ".venv"
SETUP_COMMAND = ("python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e "
                 "'.[train,test,tensorboard]' && .venv/bin/gankit generate --digit 7 -n 16 -o sevens.png")
TEST_COMMAND = ".venv/bin/python -m pytest -q"
README_MAX_BYTES = 10 * 1024
# Pages whose examples another test runs, and that test.
DELEGATED = {
    "docs/serving.md": "tests/test_serve_docs.py",
    "docs/writing-a-plugin.md": "tests/test_plugin_contract.py",
}
# Copies of the model cards for the site (docs/gen_pages.py); the cards themselves are collected.
COPIES = ("docs/models/",)
# Pages written by others' tools or hands, not held to this file's style checks.
NOT_OURS = set(DELEGATED) | {"docs/architecture.md", "docs/reliability.md", "docs/benchmarks.md"}
RUNNABLE = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python", "py": "python"}
MARK = re.compile(r"<!--\s*docs-test:\s*(?P<body>.*?)\s*-->")
APPEND = re.compile(r'append\s+"(?P<args>[^"]+)"\s+to\s+"(?P<prefix>[^"]+)"\s*:\s*(?P<why>\S.*)')
SKIP = re.compile(r"skip\s*:\s*(?P<why>\S.*)")
BLOCK_TIMEOUT_S = 600


@dataclass
class Block:
    """One fenced code block of a page, with the marks written just above it."""

    page: str
    line: int
    lang: str
    code: str
    skip: str | None = None
    appends: list[tuple[str, str]] = field(default_factory=list)

    @property
    def runnable(self) -> bool:
        return self.lang in RUNNABLE and self.skip is None


def pages() -> list[str]:
    """Every Markdown page users read: the README, the site's pages and the model cards."""
    found = ["README.md"] + sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").rglob("*.md"))
    found += sorted(str(p.relative_to(REPO)) for p in (REPO / "exports").glob("*.md"))
    return [p for p in found if not p.startswith(COPIES)]


def parse_blocks(page: str, text: str) -> list[Block]:
    """The fenced blocks of `text`, each with the docs-test marks on the lines just above it."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = re.match(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)", lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, lang = opening.groups()
        body, j = [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        block = Block(page, i + 1, lang.lower(), "\n".join(body) + "\n")
        k = i - 1
        while k >= 0 and MARK.search(lines[k]):
            mark = MARK.search(lines[k]).group("body")
            if SKIP.match(mark):
                block.skip = SKIP.match(mark).group("why")
            elif APPEND.match(mark):
                block.appends.append((APPEND.match(mark).group("prefix"), APPEND.match(mark).group("args")))
            else:
                raise AssertionError(f"{page}:{k + 1}: a docs-test mark must be 'skip: WHY' or "
                                     f"'append \"ARGS\" to \"PREFIX\": WHY', got {mark!r}")
            k -= 1
        blocks.append(block)
        i = j + 1
    return blocks


def page_blocks(page: str) -> list[Block]:
    return parse_blocks(page, (REPO / page).read_text())


def with_appends(code: str, appends: list[tuple[str, str]]) -> str:
    """`code` with each mark's arguments added to the commands that start with its prefix.

    A command may continue over lines ending in a backslash; the arguments go at its end,
    before a trailing ``# comment``.
    """
    out: list[str] = []
    lines = code.splitlines()
    i = 0
    while i < len(lines):
        start = i
        while lines[i].rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
        command = lines[start:i + 1]
        head = command[0].strip()
        for prefix, args in appends:
            if head.startswith(prefix):
                last = command[-1]
                comment = re.search(r"\s+#\s", last)
                cut = comment.start() if comment else len(last)
                command[-1] = f"{last[:cut]} {args}{last[cut:]}"
        out.extend(command)
        i += 1
    return "\n".join(out) + "\n"


def _workdir(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A folder that looks like a clone to the examples, and the environment they run in."""
    work = tmp_path / "clone"
    (work / "exports").mkdir(parents=True)
    for model in ("conditional.onnx", "per-digit.onnx"):
        shutil.copy2(REPO / "exports" / model, work / "exports" / model)
    (work / ".venv").symlink_to(VENV, target_is_directory=True)
    (work / "home").mkdir()
    no_network = "http://127.0.0.1:9/"  # the discard port: a download is refused at once
    env = {**os.environ,
           "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
           "VIRTUAL_ENV": str(VENV),
           "GANKIT_DATA": str(mnist_data_root(tmp_path)),
           "XDG_CACHE_HOME": str(work / "cache"),
           "HOME": str(work / "home"),
           "GANKIT_MNIST_MIRRORS": no_network,
           "GANKIT_FASHION_MNIST_MIRRORS": no_network,
           "COLUMNS": "100",
           "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)
    return work, env


# Commands that must never run from here: they install packages (the network, and this very
# virtualenv) or start the test suite inside itself. A block holding one needs a skip mark.
NEVER_RUN = re.compile(r"\bpip install\b|-m venv\b|-m pytest\b|\bpytest\b")


def run_block(block: Block, work: Path, env: dict[str, str], index: int) -> None:
    assert not NEVER_RUN.search(block.code), (
        f"{block.page}:{block.line}: this block installs packages or runs the tests; mark it "
        "<!-- docs-test: skip: WHY -->")
    code = with_appends(block.code, block.appends)
    if RUNNABLE[block.lang] == "bash":
        argv = ["bash", "-e", "-o", "pipefail", "-c", code]
    else:
        script = work / f"_docs_block_{index}.py"
        script.write_text(code)
        argv = [str(VENV / "bin" / "python"), str(script)]
    try:
        proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.page}:{block.line}: the {block.lang} block ran past {BLOCK_TIMEOUT_S} s:\n{code}")
    if proc.returncode != 0:
        pytest.fail(f"{block.page}:{block.line}: the {block.lang} block failed (exit {proc.returncode}):\n{code}\n"
                    f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")
    assert "Traceback (most recent call last)" not in proc.stderr, f"{block.page}:{block.line}:\n{proc.stderr}"


def _trains(page: str) -> bool:
    return any(b.runnable and re.search(r"\b(gankit|torchrun)\b.*\btrain\b|check_plugin", b.code)
               for b in page_blocks(page))


def _page_params():
    params = []
    for page in pages():
        if page in DELEGATED or not any(b.runnable for b in page_blocks(page)):
            continue
        marks = [pytest.mark.slow] if _trains(page) else []
        params.append(pytest.param(page, marks=marks, id=page))
    return params


@pytest.mark.parametrize("page", _page_params())
def test_every_example_on_the_page_runs(page, tmp_path):
    work, env = _workdir(tmp_path)
    for index, block in enumerate(page_blocks(page)):
        if block.runnable:
            run_block(block, work, env, index)


def test_every_page_is_either_run_here_or_by_its_own_test():
    runnable = {p for p in pages() if any(b.runnable for b in page_blocks(p))}
    for page, test in DELEGATED.items():
        assert (REPO / test).is_file(), f"{page}'s examples are said to run in {test}, which does not exist"
        assert Path(page).name in (REPO / test).read_text(), f"{test} no longer mentions {page}"
    assert "README.md" in runnable and "docs/getting-started.md" in runnable


def test_marks_say_why_and_code_blocks_name_their_language():
    for page in pages():
        if page in NOT_OURS:
            continue
        for block in page_blocks(page):
            assert block.lang, f"{page}:{block.line}: a code block without a language (use text for output)"
            if block.skip is not None:
                assert len(block.skip.split()) >= 3, f"{page}:{block.line}: say why the block is skipped"


def test_append_marks_only_shorten_commands_the_block_has():
    for page in pages():
        for block in page_blocks(page):
            for prefix, args in block.appends:
                assert any(line.strip().startswith(prefix) for line in block.code.splitlines()), \
                    f"{page}:{block.line}: no command starts with {prefix!r}"
                assert re.fullmatch(r"(--steps \d+|--max-seconds \d+|-n \d+)( (--steps|--max-seconds|-n) \d+)*",
                                    args), f"{page}:{block.line}: an append mark may only shorten a run: {args!r}"


def test_with_appends_puts_arguments_before_the_comment():
    code = "gankit train --plugin per-digit \\\n  --data mnist   # ten GANs\ngankit export runs/pd\n"
    assert with_appends(code, [("gankit train", "--steps 40")]) == (
        "gankit train --plugin per-digit \\\n  --data mnist --steps 40   # ten GANs\ngankit export runs/pd\n")


# ----- generated pages --------------------------------------------------------------------------

def test_generated_pages_are_up_to_date():
    """The CLI and preset references, benchmarks and model-card figures match their sources."""
    proc = subprocess.run([sys.executable, str(REPO / "docs" / "gen_pages.py"), "--check"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"generated pages drifted; run `python docs/gen_pages.py`:\n{proc.stdout}{proc.stderr}"


def test_cli_reference_lists_every_command_and_option():
    import typer.main

    from gankit.cli import COMMANDS, app

    app.load(list(COMMANDS))
    root = typer.main.get_command(app)
    ctx = root.make_context("gankit", ["--help"], resilient_parsing=True)
    reference = (REPO / "docs" / "reference" / "cli.md").read_text()
    for name in root.list_commands(ctx):
        assert f"## `gankit {name}`" in reference, name
        command = root.get_command(ctx, name)
        sub = command.make_context(name, ["--help"], parent=ctx, resilient_parsing=True)
        for param in command.get_params(sub):
            for opt in param.opts if param.param_type_name == "option" else [param.metavar]:
                assert opt in reference, f"gankit {name}: {opt} is missing from docs/reference/cli.md"


# ----- the README as a front page --------------------------------------------------------------

def _readme() -> str:
    return (REPO / "README.md").read_text()


def test_readme_is_a_front_page():
    size = len(_readme().encode())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; keep it under {README_MAX_BYTES}"
    blocks = [b for b in page_blocks("README.md") if b.lang in RUNNABLE]
    assert blocks[0].code.strip() == SETUP_COMMAND
    assert blocks[1].code.strip() == TEST_COMMAND
    first_screen = "\n".join(_readme().splitlines()[:60])
    for step in ("gankit train --plugin per-digit", "gankit export", "gankit generate --digit 7"):
        assert step in first_screen, f"the README's first screen lacks {step!r}"
    assert '-m "not slow"' in _readme() and "2-core" in _readme()


def test_setup_command_installs_what_ci_installs():
    extras = set(re.search(r"-e '\.\[([\w,]+)\]'", SETUP_COMMAND).group(1).split(","))
    ci = (REPO / ".ci" / "run").read_text()
    ci_extras = set(re.search(r"-e '\.\[([\w,]+)\]'", ci).group(1).split(","))
    assert extras <= ci_extras, f".ci/run installs {ci_extras}, the README's setup command {extras}"
    assert "-c constraints.txt" in ci


def _own_pages() -> list[str]:
    return [p for p in pages() if p not in NOT_OURS] + ["CHANGELOG.md"]


FIRST_PERSON = re.compile(r"\b(I|I'm|I've|I'd|me|my|we|We|our|Our|us)\b")
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")


def test_docs_speak_to_users_without_first_person_or_dates():
    for page in _own_pages():
        text = re.sub(r"```.*?```", "", (REPO / page).read_text(), flags=re.S)
        text = re.sub(r"`[^`]*`", "", text)
        found = FIRST_PERSON.findall(text)
        assert not found, f"{page}: first person ({', '.join(sorted(set(found)))})"
        if page != "CHANGELOG.md":
            assert not DATE.search(text), f"{page}: a date ({DATE.search(text).group()}); history goes to CHANGELOG.md"


def test_changelog_keeps_the_keep_a_changelog_layout():
    text = (REPO / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog") and "keepachangelog.com" in text
    assert "## [Unreleased]" in text
    for heading in re.findall(r"^### (.+)$", text, flags=re.M):
        assert heading in ("Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"), heading


# ----- model cards -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["conditional", "per-digit"])
def test_each_shipped_model_has_a_model_card(name):
    card = (REPO / "exports" / f"{name}.md").read_text()
    front, _, body = card.removeprefix("---\n").partition("\n---\n")
    assert card.startswith("---\n") and "license:" in front and "library_name: onnx" in front
    for section in ("## Intended use", "## Training data", "## How it was made", "## Evaluation", "## Limitations"):
        assert section in body, f"{name}: no {section!r} section"
    how = body.split("## How it was made", 1)[1].split("\n## ", 1)[0]
    assert f"gankit export " in how and f"-o exports/{name}.onnx" in how, "the card must give the export command"
    assert "per-digit accuracy" in body.lower() or "Per-digit accuracy" in body
    assert not (REPO / "exports" / "README.md").exists(), "the model cards replace exports/README.md"


def test_help_has_no_type_tags_and_conventional_metavars():
    env = {**os.environ, "COLUMNS": "200"}
    for command in (["--help"], ["generate", "--help"], ["evaluate", "--help"], ["train", "--help"],
                    ["export", "--help"], ["info", "--help"], ["plugins", "show", "--help"]):
        proc = subprocess.run([str(VENV / "bin" / "gankit"), *command], capture_output=True, text=True, env=env,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert not re.search(r"<(bool|str|int|float|path|list\[\w+\])>", proc.stdout), proc.stdout
    generate = subprocess.run([str(VENV / "bin" / "gankit"), "generate", "--help"], capture_output=True, text=True,
                              env=env, timeout=120).stdout
    assert re.search(r"--digit\s+-d\s+DIGIT", generate) and re.search(r"--count\s+-n\s+N\b", generate)
    assert re.search(r"--model\s+-m\s+PATH", generate)
    evaluate = subprocess.run([str(VENV / "bin" / "gankit"), "evaluate", "--help"], capture_output=True, text=True,
                              env=env, timeout=120).stdout
    assert "gankit evaluate [OPTIONS] MODEL" in evaluate


def test_show_completion_gives_the_shell_asked_for_or_refuses():
    gankit = str(VENV / "bin" / "gankit")
    zsh = subprocess.run([gankit, "--show-completion", "zsh"], capture_output=True, text=True, timeout=120)
    assert zsh.returncode == 0 and zsh.stdout.startswith("#compdef gankit"), zsh.stdout[:200] + zsh.stderr
    fish = subprocess.run([gankit, "--show-completion=fish"], capture_output=True, text=True, timeout=120)
    assert fish.returncode == 0 and "complete --command gankit" in fish.stdout
    bad = subprocess.run([gankit, "--show-completion", "tcsh"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown shell 'tcsh'" in bad.stderr and "Traceback" not in bad.stderr


def test_install_hint_names_this_clone():
    from gankit.errors import install_hint

    hint = install_hint("train")
    assert f"-e '{REPO}[train]'" in hint and "constraints.txt" in hint


# ----- docstrings and help ---------------------------------------------------------------------

def test_everything_the_api_reference_shows_has_a_docstring():
    """Each object on docs/reference/api.md, and its public methods, says what it does."""
    griffe = pytest.importorskip("griffe", reason="the docs extra (mkdocstrings) brings griffe")
    package = griffe.load("gankit", search_paths=[str(REPO)], resolve_aliases=False)
    names = re.findall(r"^::: ([\w.]+)", (REPO / "docs" / "reference" / "api.md").read_text(), flags=re.M)
    assert len(names) > 20
    for name in names:
        obj = package
        for part in name.split(".")[1:]:
            assert part in obj.members, f"docs/reference/api.md names {name}, which does not exist"
            obj = obj.members[part]
        members = [obj] + [m for n, m in getattr(obj, "members", {}).items()
                           if obj.kind.value == "class" and not n.startswith("_") and m.kind.value == "function"]
        for member in members:
            assert member.docstring and member.docstring.value.strip(), f"{member.path} has no docstring"


def test_every_command_and_option_has_help():
    import typer.main

    from gankit.cli import COMMANDS, app

    app.load(list(COMMANDS))
    root = typer.main.get_command(app)
    ctx = root.make_context("gankit", ["--help"], resilient_parsing=True)
    for name in root.list_commands(ctx):
        command = root.get_command(ctx, name)
        assert command.help, f"gankit {name} has no help text"
        sub = command.make_context(name, ["--help"], parent=ctx, resilient_parsing=True)
        for param in command.get_params(sub):
            assert param.help, f"gankit {name}: {param.opts or param.name} has no help text"


def test_site_pages_link_only_to_pages_of_the_site():
    """A link from a site page to a repository file (../bench/..., ../gankit/...) is broken on the
    built site, and the strict build fails on it: name the file as code, or link the site's page."""
    docs = REPO / "docs"
    for page in sorted(docs.rglob("*.md")):
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:|#", target):
                continue
            resolved = (page.parent / target.split("#")[0]).resolve()
            assert resolved.is_relative_to(docs.resolve()) and resolved.exists(), \
                f"{page.relative_to(REPO)} links to {target}, which is not a page or picture of the site"
