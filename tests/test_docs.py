"""The documentation's examples, run as written against live local servers.

Pages: README.md, the Markdown pages it links and every page under docs/. Each fenced block
in the language console, sh, bash, shell or python carries a marker on the line before it:

    <!-- run -->                  run it here; its expected output is beside it
    <!-- run: exit=1 -->          ... and every command in it ends with exit status 1
    <!-- run: server=embed -->    ... against the minilm-embed server (default: minilm-intent)
    <!-- not run: REASON -->      shown only (a GPU, Docker, a cluster, a server that runs until Ctrl-C)

A console block: lines starting with `$ ` are commands (a trailing `\\` continues one); the lines
after a command, up to the next `$ `, are its expected output (stdout and stderr together).
A python block: the fenced block right after it is its expected output.

What is compared is what does not depend on the machine: every word and every whole number
(labels, shapes, counts, exit status, error types and messages, flags) exactly; decimal numbers
within 0.1 (scores move with the CPU and the INT8 variant built for it); a number followed by
`ms` or `s` not at all (latencies); `...` in the expected output stands for anything.
Rich tables are compared by their words, so borders and padding do not matter.

The test points the examples at its own servers (free ports, never 8000/8001): `127.0.0.1:8001`
and `127.0.0.1:8000` in a command become the server's gRPC and HTTP addresses (and back again
in what it prints), a client command without `--url` gets the server's gRPC URL, and
`Path("triton_models")` in Python becomes the repository the session serves.
Blocks marked `not run` are reported as skipped, with their reason (`pytest -ra` lists them).
Set TRITON_ENCODERS_DOCS_SHOW=1 to print each example's actual output (to paste into a page).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE_LANGUAGES = {"console", "sh", "bash", "shell", "python"}
FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)\s*$")
MARKER = re.compile(r"^<!--\s*(run|not run)\s*(?::\s*(.*?))?\s*-->\s*$")
# Scores move with the INT8 variant the building CPU chose: a low-margin intent ("wake me up at
# 6:30 tomorrow", alarm) read 0.634 and 0.685 on two variants built on the same machine.
SCORE_TOLERANCE = 0.1
TOKEN = re.compile(r"\.\.\.|\d+(?:\.\d+)?|[^\W\d]+|[^\w\s]")   # `...`, numbers, words, one punctuation mark
TABLE_DRAWING = re.compile(r"[\u2500-\u257f]")     # rich's box-drawing characters
TIME_UNIT = re.compile(r"^(ms|s|us|µs)$")
TIMEOUT_S = 300


@dataclass
class Block:
    page: str
    line: int           # 1-based line of the opening fence
    language: str
    text: str
    marker: str | None  # "run", "not run" or None
    options: str        # what follows the colon of the marker
    output: str | None = None   # a python block's expected output (the fence after it)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    def option(self, name: str, default: str) -> str:
        found = re.search(rf"\b{name}=(\S+)", self.options)
        return found.group(1) if found else default


def pages() -> list[str]:
    """README.md, the .md pages it links, and docs/*.md."""
    readme = (ROOT / "README.md").read_text()
    linked = {target for target in re.findall(r"\]\(([^)#\s]+\.md)", readme) if (ROOT / target).is_file()}
    linked |= {str(path.relative_to(ROOT)) for path in (ROOT / "docs").glob("*.md")}
    return ["README.md", *sorted(linked - {"README.md"})]


def parse(page: str) -> list[Block]:
    lines = (ROOT / page).read_text().splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = next((i for i in range(index + 1, len(lines)) if lines[i].startswith(opening.group(1))), None)
        assert end is not None, f"{page}:{index + 1}: this fence is never closed"
        marker = _marker_above(lines, index)
        blocks.append(Block(page, index + 1, opening.group(2), "\n".join(lines[index + 1:end]),
                            marker[0] if marker else None, marker[1] if marker else ""))
        index = end + 1
    return _attach_outputs(blocks, lines)


def _marker_above(lines: list[str], fence_index: int) -> tuple[str, str] | None:
    above = fence_index - 1
    while above >= 0 and not lines[above].strip():
        above -= 1
    found = MARKER.match(lines[above].strip()) if above >= 0 else None
    return (found.group(1), found.group(2) or "") if found else None


def _attach_outputs(blocks: list[Block], lines: list[str]) -> list[Block]:
    """A run python block's expected output is the next block, when nothing but blank lines is between."""
    examples = []
    skip_next = False
    for block, following in zip(blocks, [*blocks[1:], None]):
        if skip_next:
            skip_next = False
            continue
        if block.language == "python" and block.marker == "run" and following is not None:
            closing = block.line + block.text.count("\n") + 1      # 0-based index of the closing fence
            gap = lines[closing + 1:following.line - 1]
            if all(not line.strip() for line in gap):
                block.output, skip_next = following.text, True
        examples.append(block)
    return examples


def code_blocks() -> list[Block]:
    return [block for page in pages() for block in parse(page) if block.language in CODE_LANGUAGES]


# ------------------------------------------------------------------ comparing outputs

def tokens(text: str) -> list[str]:
    return TOKEN.findall(TABLE_DRAWING.sub(" ", text))


def _is_number(token: str) -> bool:
    return token[:1].isdigit()


def _same(expected: list[str], actual: list[str]) -> bool:
    """Token lists equal, decimals within the tolerance, numbers before a time unit ignored."""
    if len(expected) != len(actual):
        return False
    for position, (want, got) in enumerate(zip(expected, actual)):
        if _is_number(want) and _is_number(got):
            unit = expected[position + 1] if position + 1 < len(expected) else ""
            if TIME_UNIT.match(unit):
                continue
            if "." in want or "." in got:
                if abs(float(want) - float(got)) > SCORE_TOLERANCE:
                    return False
                continue
        if want != got:
            return False
    return True


def matches(expected: str, actual: str) -> bool:
    """`actual` matches `expected` token by token; `...` in `expected` stands for any tokens."""
    segments: list[list[str]] = [[]]
    for token in tokens(expected):
        segments.append([]) if token == "..." else segments[-1].append(token)
    found = tokens(actual)
    if len(segments) == 1:
        return _same(segments[0], found)
    first, *middle, last = segments
    if not _same(first, found[:len(first)]):
        return False
    position = len(first)
    for segment in middle:
        starts = range(position, len(found) - len(segment) + 1)
        start = next((s for s in starts if _same(segment, found[s:s + len(segment)])), None)
        if start is None:
            return False
        position = start + len(segment)
    tail = len(found) - len(last)
    return tail >= position and _same(last, found[tail:])


# ------------------------------------------------------------------ pointing examples at the servers

@dataclass
class Target:
    grpc: str            # "127.0.0.1:PORT"
    http: str
    repository: Path

    def into(self, text: str) -> str:
        for host in ("127.0.0.1", "localhost"):
            text = text.replace(f"{host}:8001", self.grpc).replace(f"{host}:8000", self.http)
        text = re.sub(r"(-m client|triton-encoders client)(?![^|;&\n]*--url)", rf"\1 --url grpc://{self.grpc}", text)
        return text.replace('Path("triton_models")', f'Path("{self.repository}")')

    def back(self, text: str) -> str:
        return text.replace(self.grpc, "127.0.0.1:8001").replace(self.http, "127.0.0.1:8000")


def console_commands(text: str) -> list[tuple[str, str]]:
    """(command, expected output) pairs of a console block."""
    pairs: list[tuple[str, list[str]]] = []
    continued = False
    for line in text.splitlines():
        if line.startswith("$ ") or continued:
            command = line[2:] if line.startswith("$ ") and not continued else line
            if continued:
                pairs[-1] = (pairs[-1][0] + "\n" + command, pairs[-1][1])
            else:
                pairs.append((command, []))
            continued = line.rstrip().endswith("\\")
        elif pairs:
            pairs[-1][1].append(line)
    return [(command, "\n".join(output)) for command, output in pairs]


def environment() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "100", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def run_console(block: Block, target: Target) -> None:
    commands = console_commands(block.text)
    assert commands, f"{block.id}: a run console block needs `$ ` command lines"
    exit_status = int(block.option("exit", "0"))
    for command, expected in commands:
        result = subprocess.run(["bash", "-c", target.into(command)], cwd=ROOT, env=environment(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT_S)
        actual = target.back(result.stdout)
        _show(block, command, actual)
        assert result.returncode == exit_status, (
            f"{block.id}: `{command}` exited {result.returncode}, the page says {exit_status}:\n{actual}")
        assert matches(expected, actual), f"{block.id}: `{command}` printed\n{actual}\nthe page shows\n{expected}"


def run_python(block: Block, target: Target) -> None:
    assert block.output is not None, f"{block.id}: a run python block needs its expected output in the next block"
    result = subprocess.run([sys.executable, "-c", target.into(block.text)], cwd=ROOT, env=environment(),
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT_S)
    actual = target.back(result.stdout)
    _show(block, "python", actual)
    assert result.returncode == 0, f"{block.id}: the example failed:\n{actual}"
    assert matches(block.output, actual), f"{block.id}: it printed\n{actual}\nthe page shows\n{block.output}"


def _show(block: Block, command: str, actual: str) -> None:
    if os.environ.get("TRITON_ENCODERS_DOCS_SHOW"):
        print(f"\n--- {block.id}: {command}\n{actual}", file=sys.stderr)


# ------------------------------------------------------------------ the tests

BLOCKS = code_blocks()


def test_every_example_is_marked_run_or_not_run():
    unmarked = [block.id for block in BLOCKS if block.marker is None]
    assert not unmarked, ("these examples carry no <!-- run --> or <!-- not run: why --> marker "
                          f"(see tests/test_docs.py): {unmarked}")


def test_the_docs_run_examples_of_every_kind():
    """The test itself is not empty: the README's request and the client pages are run."""
    run = [block for block in BLOCKS if block.marker == "run"]
    assert {block.page for block in run} >= {"README.md", "client/README.md", "serve/README.md"}
    assert {block.language for block in run} >= {"console", "python"}


@pytest.fixture(scope="module")
def targets(request, intent_server, intent_repository) -> dict[str, Target]:
    found = {"intent": Target(intent_server.grpc_url, intent_server.http_url, intent_repository)}
    if any(block.option("server", "intent") == "embed" for block in BLOCKS if block.marker == "run"):
        embed_server = request.getfixturevalue("embed_server")
        repository = request.getfixturevalue("embed_repository")
        found["embed"] = Target(embed_server.grpc_url, embed_server.http_url, repository)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.marker], ids=lambda block: block.id)
def test_example(block: Block, targets):
    if block.marker == "not run":
        pytest.skip(f"{block.id} not run here: {block.options or 'no reason given'}")
    target = targets[block.option("server", "intent")]
    (run_python if block.language == "python" else run_console)(block, target)


# ------------------------------------------------------------------ the comparison itself

@pytest.mark.parametrize("expected, actual, same", [
    ("car_rental 0.926", "car_rental 0.931", True),                 # a score within the tolerance
    ("car_rental 0.926", "uber 0.926", False),                      # another label
    ("car_rental 0.926", "car_rental 0.976", True),                 # another INT8 variant
    ("car_rental 0.926", "car_rental 0.726", False),                # a score off by more
    ("(1, 157)", "(1, 156)", False),                                # a shape
    ("3 text(s) over grpc://127.0.0.1:8001 in 11.1 ms", "3 text(s) over grpc://127.0.0.1:8001 in 92.4 ms", True),
    ("error: texts[0] is empty", "error: texts[1] is empty", False),
    ("│ 0 │ alarm │ 0.95 │", "┃ 0 ┃    alarm ┃ 0.947 ┃", True),      # table borders and padding
    ("start ... end", "start anything at all end", True),
    ("start ... end", "start anything at all", False),
    ("a b", "a b c", False),
    ('{"a":"1",...,"c":[2]}', '{"a":"1","b":{"x":0},"c":[2]}', True),   # `...` between punctuation
])
def test_matches(expected, actual, same):
    assert matches(expected, actual) is same


def test_a_broken_example_fails(tmp_path):
    """A page whose shown output no longer matches makes its example fail."""
    block = Block("broken.md", 1, "console", "$ printf 'car_rental 0.93\\n'\nuber 0.93", "run", "")
    with pytest.raises(AssertionError, match="the page shows"):
        run_console(block, Target("127.0.0.1:1", "127.0.0.1:2", tmp_path))
    failing = Block("broken.md", 1, "console", "$ exit 1", "run", "")
    with pytest.raises(AssertionError, match="exited 1, the page says 0"):
        run_console(failing, Target("127.0.0.1:1", "127.0.0.1:2", tmp_path))
