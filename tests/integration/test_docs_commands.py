"""Every command line in the README's and docs/deploy.md's ```sh blocks runs as written.

The README's "Try it yourself" section has its own test (test_readme_try_it.py), and CI runs
the `make demo` / `make test` pair itself; every other line of a ```sh block is checked here:

- `.venv/bin/cos-autotag ...` runs for real, with bash, in a scratch folder where `.venv` is the
  virtualenv running this test and `.env` is a copy of `.env.example`, with `.env.example`'s
  values exported and the keys and endpoint of a local emulator that holds `.env.example`'s
  bucket, with labeled photos at the keys the docs name. It must exit 0.
- shell builtins and file commands (`set`, `export`, `cp`...) run the same way;
- `make X`: the Makefile has the target (`make -n X` succeeds);
- `.venv/bin/python -c ...` calling the SDK against the real cloud: the SDK has the methods called;
- a Tencent CLI (`scf`, `tccli`, `coscmd`...) is in EXTERNAL, which names where Tencent
  documents it; any other first word fails, as do a bare `cos-autotag` (not on PATH), usage
  brackets (`[--prefix P]`) and `<placeholders>`: a line a user must edit belongs in a ```text block.
"""

from __future__ import annotations

import ast
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from qcloud_cos import CosS3Client

from cos_autotag_tools.deploy.check import read_env_file
from cos_autotag_tools.emulator import Emulator
from tests.integration.test_local_command import clean_env
from tests.support.emulator import seed_object
from tests.support.images import image_bytes

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "docs/deploy.md")
# Run by their own test, and by CI itself.
SKIPPED_SECTIONS = {("README.md", "Try it yourself")}
SKIPPED_BLOCKS = (["make demo", "make test"],)

OUR_CLI = ".venv/bin/cos-autotag"
OUR_PYTHON = ".venv/bin/python"
# Shell builtins and coreutils: harmless, so they run for real.
SHELL = frozenset({"set", ".", "export", "unset", "cd", "cp", "cat"})
# Commands of Tencent's own tools, shown as Tencent documents them; never run (they need the cloud).
EXTERNAL = {
    # Serverless Cloud Framework: Tencent Cloud docs, product 1154 ("Serverless Cloud Framework"):
    # `npm i -g serverless-cloud-framework`, then `scf deploy` / `scf remove` in a folder with a serverless.yml.
    "npm": "Serverless Cloud Framework install, Tencent Cloud product 1154",
    "scf": "Serverless Cloud Framework CLI, Tencent Cloud product 1154",
    # TencentCloud CLI: Tencent Cloud docs, product 1013 ("TCCLI"): `pip install tccli`, `tccli <service> <Action>`.
    "tccli": "TencentCloud CLI, Tencent Cloud product 1013",
    # COSCMD: COS docs 436/10976 ("COSCMD"): `pip install coscmd`, `coscmd config`, `coscmd upload`.
    "coscmd": "COSCMD, COS docs 436/10976",
    # pip installs tccli and coscmd, as both pages above show.
    "pip": "installs tccli (product 1013) and coscmd (COS 436/10976)",
}
SEPARATORS = frozenset({"&&", "||", ";", "|", "(", ")", "&"})
REDIRECTIONS = frozenset({">", ">>", "<", "2>", "&>"})
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PLACEHOLDER = re.compile(r"<[^<>\s][^<>]*>")
USAGE_BRACKET = re.compile(r"(?:^|\s)\[")

# What the emulator holds: .env.example's bucket, with a labeled photo at each key the docs name.
SECRET_ID, SECRET_KEY = "AKIDdocs000000001", "docs-secret-key-0123456789abcdef"
LABELED_KEYS = ("photo.jpg", "uploads/photo.jpg")
LABEL = "猫"


@dataclass(frozen=True)
class DocLine:
    doc: str
    section: str
    text: str  # one logical line: continuation lines joined, as bash reads it

    def __str__(self) -> str:
        return f"{self.doc} ({self.section}): {self.text}"


@dataclass(frozen=True)
class Verdict:
    kind: str  # "cli", "shell", "make", "python", "external"; "" when the line cannot run as written
    problems: tuple[str, ...] = ()
    words: tuple[str, ...] = ()


def doc_lines(doc: str) -> list[DocLine]:
    text = (ROOT / doc).read_text(encoding="utf-8")
    found: list[DocLine] = []
    for section, body in re.findall(r"^## (.+?)\n(.*?)(?=^## |\Z)", text, re.S | re.M):
        if (doc, section.strip()) in SKIPPED_SECTIONS:
            continue
        for _indent, block in re.findall(r"^([ \t]*)```sh\n(.*?)^\1```", body, re.S | re.M):
            joined = textwrap.dedent(block).replace("\\\n", "")
            lines = [line.strip() for line in joined.splitlines()]
            lines = [line for line in lines if line and not line.startswith("#")]
            if [strip_comment(line).strip() for line in lines] in SKIPPED_BLOCKS:
                continue
            found += [DocLine(doc, section.strip(), line) for line in lines]
    return found


def all_lines() -> list[DocLine]:
    return [line for doc in DOCS for line in doc_lines(doc)]


def strip_comment(line: str) -> str:
    """The line without its trailing `# comment` (a # outside quotes, at a word's start)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


def commands(text: str) -> list[list[str]]:
    """The simple commands of a line, each as its words (assignments and redirections dropped),
    including those inside $(...)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    found: list[list[str]] = []
    current: list[str] = []
    skip_next = False
    for token in tokens:
        if skip_next:
            skip_next = False
        elif token in SEPARATORS:
            found.append(current)
            current = []
        elif token in REDIRECTIONS:
            skip_next = True
        elif current or not ASSIGNMENT.match(token):
            current.append(token)
    found.append(current)
    for inner in re.findall(r"\$\(([^()]*)\)", text):
        found += commands(inner)
    return [words for words in found if words]


def check_line(text: str) -> Verdict:
    """What kind of line this is, and why it would not run as written."""
    code = strip_comment(text)
    problems: list[str] = []
    if USAGE_BRACKET.search(code):
        problems.append("usage brackets such as [--flag VALUE]: show a real example and explain options in prose")
    if PLACEHOLDER.search(code):
        problems.append("a <placeholder> to fill in: move the line to a ```text block, or set a variable first")
    try:
        simple = commands(code)
    except ValueError as error:
        return Verdict("", (*problems, f"not shell syntax: {error}"))
    words = tuple(words[0] for words in simple)
    for word in words:
        if word == "cos-autotag":
            problems.append(f"bare `cos-autotag` is not on PATH: write {OUR_CLI}")
        elif word not in SHELL and word not in EXTERNAL and word not in (OUR_CLI, OUR_PYTHON, "make"):
            problems.append(f"`{word}` is neither our CLI nor an allowed command")
    if problems:
        return Verdict("", tuple(problems), words)
    if OUR_CLI in words:
        kind = "cli"
    elif "make" in words:
        kind = "make"
    elif OUR_PYTHON in words:
        kind = "python"
    elif all(word in SHELL for word in words):
        kind = "shell"
    else:
        kind = "external"
    mixed = {"cli": EXTERNAL.keys(), "make": {OUR_CLI, OUR_PYTHON, *EXTERNAL}, "python": {OUR_CLI, *EXTERNAL}}
    if kind in mixed and set(words) & set(mixed[kind]):
        return Verdict("", (f"a {kind} line mixed with commands that cannot run here: split it",), words)
    return Verdict(kind, (), words)


def sdk_methods(text: str) -> list[str]:
    """The CosS3Client methods a `.venv/bin/python -c` line calls."""
    argv = shlex.split(strip_comment(text))
    assert argv[:2] == [OUR_PYTHON, "-c"], text
    tree = ast.parse(argv[2])
    clients = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id == "CosS3Client"
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    return [
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in clients
    ]


# --- the checker itself can fail ------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("cos-autotag show photo.jpg", "bare `cos-autotag`"),
        (".venv/bin/cos-autotag untag --bucket b-1250000000 [--prefix P] [--dry-run]", "usage brackets"),
        (".venv/bin/cos-autotag untag [--mode auto|tags|metadata]", "usage brackets"),
        (".venv/bin/cos-autotag untag --mode auto|tags|metadata", "`tags` is neither"),
        ("tccli cam AttachRolePolicy --PolicyId <PolicyId printed by CreatePolicy>", "<placeholder>"),
        ('tccli sts AssumeRole --RoleArn "qcs::cam::uin/<your UIN>:roleName/r"', "<placeholder>"),
        ("cp .env.example .env && $EDITOR .env", "`$EDITOR` is neither"),
        ("aws s3 ls", "`aws` is neither"),
        ("(cd layers && cos-autotag check)", "bare `cos-autotag`"),
        ('X="$(curl example.com)" scf deploy', "`curl` is neither"),
        (".venv/bin/cos-autotag check && scf deploy", "mixed"),
    ],
)
def test_a_line_that_does_not_run_as_written_fails_the_checker(line: str, problem: str) -> None:
    verdict = check_line(line)
    assert verdict.kind == "" and any(problem in p for p in verdict.problems), verdict


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ('.venv/bin/cos-autotag show "${COS_TRIGGER_PREFIX}photo.jpg"   # the labels', "cli"),
        ("AUTOTAG_MIN_CONFIDENCE=30 .venv/bin/cos-autotag backfill --relabel --dry-run", "cli"),
        (".venv/bin/cos-autotag policy --trust > trust.json   # the role trusts scf.qcloud.com", "cli"),
        ("(cd layers && scf deploy)", "external"),
        ('tccli cam CreatePolicy --PolicyName p --PolicyDocument "$(cat policy.json)"', "external"),
        ("set -a; . ./.env; set +a", "shell"),
        ("make layer   # the layer", "make"),
    ],
)
def test_a_line_that_runs_as_written_passes_the_checker(line: str, kind: str) -> None:
    assert check_line(line) == Verdict(kind, (), check_line(line).words)


# --- the docs ---------------------------------------------------------------------------------


def test_the_docs_have_command_lines_of_every_kind() -> None:
    """So that a change to the extraction cannot silently check nothing."""
    lines = all_lines()
    kinds = {check_line(line.text).kind for line in lines}
    assert {"cli", "shell", "make", "python", "external"} <= kinds, kinds
    assert {line.section for line in lines} >= {"Deploy", "Backfill", "Untag", "6. Check it", "8. Removing everything"}
    assert not any(line.section == "Try it yourself" for line in lines)


@pytest.mark.parametrize("line", all_lines(), ids=str)
def test_every_line_is_a_command_that_runs_as_written(line: DocLine) -> None:
    verdict = check_line(line.text)
    assert not verdict.problems, f"{line}\n  " + "\n  ".join(verdict.problems)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """Fresh for each line: every line sees the labeled photos, whatever the lines before it did."""
    example = read_env_file(ROOT / ".env.example")
    bucket, region = example["COS_BUCKET"], example["COS_REGION"]
    with Emulator(credentials={SECRET_ID: SECRET_KEY}, appid=example["COS_APPID"]) as emu:
        emu.create_bucket(bucket, region)
        for seed, key in enumerate(LABELED_KEYS):
            seed_object(
                emu,
                bucket,
                key,
                image_bytes(size=(200, 200), seed=seed),
                content_type="image/jpeg",
                tags={"owner": "alice", "autotag": f"v1:docs{seed}", f"autotag:{LABEL}": "90"},
            )
        seed_object(
            emu, bucket, "uploads/unlabeled.jpg", image_bytes(size=(200, 200), seed=9), content_type="image/jpeg"
        )
        yield emu


@pytest.fixture
def shell(tmp_path: Path, emulator: Emulator) -> tuple[Path, dict[str, str]]:
    """A folder that looks like the repository root after `make setup` and `cp .env.example .env`,
    and the environment of a shell that has loaded `.env` and exported the emulator's keys."""
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env.example")
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    env = {
        **clean_env(),
        **read_env_file(ROOT / ".env.example"),
        "HOME": str(tmp_path),
        "TENCENT_SECRET_ID": SECRET_ID,
        "TENCENT_SECRET_KEY": SECRET_KEY,
        "TENCENTCLOUD_SECRETID": SECRET_ID,
        "TENCENTCLOUD_SECRETKEY": SECRET_KEY,
        "AUTOTAG_COS_ENDPOINT": emulator.endpoint,
    }
    return tmp_path, env


def run_line(text: str, shell: tuple[Path, dict[str, str]]) -> subprocess.CompletedProcess[str]:
    folder, env = shell
    return subprocess.run(
        ["bash", "-c", text], cwd=folder, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def runnable(*kinds: str) -> list[DocLine]:
    return [line for line in all_lines() if check_line(line.text).kind in kinds]


@pytest.mark.parametrize("line", runnable("cli", "shell"), ids=str)
def test_our_commands_run_against_the_emulator(line: DocLine, shell: tuple[Path, dict[str, str]]) -> None:
    done = run_line(line.text, shell)
    assert done.returncode == 0, f"{line}\nexit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    if " show " in line.text:
        assert LABEL in done.stdout, done.stdout


def test_a_line_that_fails_fails_the_run(shell: tuple[Path, dict[str, str]]) -> None:
    """The runner sees a failure: the same show, on a bucket the emulator does not have, and with
    neither --bucket nor COS_BUCKET."""
    assert run_line(f"{OUR_CLI} show photo.jpg --bucket nope-1250000000", shell).returncode == 1
    missing = run_line(f"unset COS_BUCKET; {OUR_CLI} show photo.jpg", shell)
    assert missing.returncode == 2 and "--bucket" in missing.stderr and "COS_BUCKET" in missing.stderr


@pytest.mark.parametrize("line", runnable("make"), ids=str)
def test_make_targets_exist(line: DocLine) -> None:
    for words in commands(strip_comment(line.text)):
        assert words[0] == "make"
        done = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{line}\n{done.stderr}"


@pytest.mark.parametrize("line", runnable("python"), ids=str)
def test_sdk_calls_name_methods_the_sdk_has(line: DocLine) -> None:
    methods = sdk_methods(line.text)
    assert methods, f"{line}: no CosS3Client call found"
    missing = [name for name in methods if not callable(getattr(CosS3Client, name, None))]
    assert not missing, f"{line}: cos-python-sdk-v5's CosS3Client has no {missing}"
