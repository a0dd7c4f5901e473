"""Every ```python block of README.md and docs/*.md runs, each in a fresh Python process, on tiny settings: a
documented call can no longer crash as written (a renamed argument, a removed function, a default that fails).

A block runs as the user would paste it, after three documented kinds of change, each listed below with its reason:

* SUBSTITUTIONS, textual, applied to every block that holds them, shrink the settings to seconds (the Hub's MNIST ->
  the embedded 8x8 digits, 500 outer steps -> 2, ...). Each must still match a block, so none goes stale unnoticed.
* PREAMBLES, per block, define what a block presumes the reader already has (`pil_images`, the `memory` of the
  page's previous block, ...). Nothing else of a block is changed.
* SKIP names the blocks that cannot run even so, with the reason (none at present).

Every block runs against the in-memory fake Hub of tests/fake_hub.py, plugged in inside the subprocess, so a Hub id
("user/mnist-ipc1") is pushed to and loaded from it and nothing reaches the network. A block runs under its own
file name and line numbers, so a traceback names the line of README.md or docs/*.md that failed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks() -> dict[str, tuple[int, str]]:
    """`file#n` (the page's n-th ```python fence, so editing prose above a block does not rename it) -> (the fence's
    line, the block's code)."""
    blocks = {}
    for page in PAGES:
        text = page.read_text()
        for n, match in enumerate(re.finditer(r"(?ms)^```python\n(.*?)^```", text), start=1):
            line = text.count("\n", 0, match.start()) + 1
            blocks[f"{page.relative_to(ROOT)}#{n}"] = (line, match.group(1))
    return blocks


BLOCKS = python_blocks()

# Distillation in a few seconds on the digits: 2 outer steps of T=2 with width-8 networks, 1 final model of 2 epochs.
TINY_DISTILL = ("steps=2, unroll_steps=2, learner_width=8, real_per_class=8, synthetic_per_class=4, eval_every=0, "
                "eval_epochs=2, eval_width=8, final_models=1, final_epochs=2, compile=False, progress=False")

# (text in a block, what it runs as, why): applied to every block holding the text, in this order.
SUBSTITUTIONS = [
    ('"ylecun/mnist"', '"digits"', "the embedded 8x8 digits: offline, and loaded in a blink (the README names them "
                                   "as the alternative; no block needs 28x28 images)"),
    ("steps=500, unroll_steps=50,", TINY_DISTILL + ",", "a distillation of seconds instead of CPU-hours"),
    ('steps=300, unroll_steps=20, optimizer="adam", lr=0.01,', f"{TINY_DISTILL}, eval_episodes=2, query_encoder_epochs=1,",
     "the image-addressed memory's loop, tiny"),
]

# What a block presumes its reader has, by block (the page's previous blocks, or the reader's own data).
DIGITS = ("import torch\nfrom hf_rtp import AddressableMemory\nfrom hf_rtp.data import DataConfig\n"
          "train, test = DataConfig('digits').load()\n")
PREAMBLES = {
    # the reader's own pictures, of the digits' size (the substitution made the memory's images 8x8)
    "README.md#1": "from PIL import Image\npil_images = [Image.new('L', (8, 8), 128) for _ in range(3)]\n",
    # two memories of disjoint classes, as two distillations of part of the digits would leave them
    "docs/continual.md#1": (
        "from hf_rtp import AddressableMemory\nfrom hf_rtp.data import DataConfig\n"
        "memory_01 = AddressableMemory.for_dataset(DataConfig('digits', classes='0,1').load()[0], ipc=1, num_bases=4)\n"
        "memory_23 = AddressableMemory.for_dataset(DataConfig('digits', classes='2,3').load()[0], ipc=1, num_bases=4)\n"),
    # the page's own imports, the digits, a batch of query images and four shots (two per label)
    "docs/image_addressing.md#1": DIGITS + "from hf_rtp import DistillConfig, distill_memory\n"
                                           "x = test.images[:2]\nshots = test.images[:4]\n",
    # the README's memory (MNIST there, the digits here)
    "docs/memory.md#1": DIGITS + "memory = AddressableMemory.for_dataset(train, ipc=1, num_bases=16, downsample=2)\n",
    "docs/memory.md#2": DIGITS + "memory = AddressableMemory.for_dataset(train, ipc=1, num_bases=16, downsample=2)\n",
    "docs/soft_labels.md#1": DIGITS,
}

# Blocks that cannot run even with the above, and why. Must only name blocks that exist.
SKIP: dict[str, str] = {}

# Files a block's comments say it writes (relative to the folder it runs in): checked after it ran.
WRITES = {
    "README.md#1": ["outputs/mnist/memory/model.safetensors", "outputs/mnist/memory/README.md",
                     "outputs/mnist-ipc1/model.safetensors", "outputs/mnist-ipc1/README.md"],
    "docs/continual.md#1": ["outputs/bank/bank.json"],
    "docs/image_addressing.md#1": ["outputs/by-images/model.safetensors"],
    "docs/memory.md#2": ["outputs/mnist-ipc1/model.safetensors"],
}

# Run in the subprocess before a block: the fake Hub (tests/fake_hub.py) for the whole process, its caches in HF_HOME.
# (A reference is kept: a context manager left to the garbage collector would unplug the fake mid-block; it is left
# at exit, before the interpreter tears its modules down.)
FAKE_HUB = ("import atexit\nfrom tests.fake_hub import use_fake_hub\n_fake_hub = use_fake_hub(os.environ['HF_HOME'])\n"
            "_fake_hub.__enter__()\natexit.register(_fake_hub.__exit__, None, None, None)\n")


def shrunk(code: str) -> str:
    for old, new, _ in SUBSTITUTIONS:
        code = code.replace(old, new)
    return code


def script(name: str) -> str:
    """The program a block runs as: the fake Hub, the block's preamble, then the block (shrunk, from block.py) compiled
    under its page's name and line numbers."""
    line, _ = BLOCKS[name]
    page = name.rsplit("#", 1)[0]
    return ("import os\n" + FAKE_HUB + PREAMBLES.get(name, "")
            + f"exec(compile('\\n' * {line} + open('block.py').read(), {page!r}, 'exec'))\n")


def test_the_lists_name_only_blocks_and_text_that_exist():
    """SKIP, PREAMBLES and WRITES name existing blocks, and each substitution still matches one: a moved or edited
    block is noticed here rather than silently run unshrunk or left untested."""
    assert BLOCKS, "no ```python block in README.md or docs/*.md"
    for table in (SKIP, PREAMBLES, WRITES):
        assert set(table) <= set(BLOCKS), f"{sorted(set(table) - set(BLOCKS))} are not blocks (there are {sorted(BLOCKS)})"
    unused = [old for old, _, _ in SUBSTITUTIONS if not any(old in code for _, code in BLOCKS.values())]
    assert not unused, f"substitutions that match no block any more: {unused}"


@pytest.mark.parametrize("name", list(BLOCKS))
def test_the_block_runs(name, tmp_path):
    """The block, shrunk, runs to its end in a fresh process (in an empty folder), and writes what it says it does."""
    if name in SKIP:
        pytest.skip(SKIP[name])
    (tmp_path / "block.py").write_text(shrunk(BLOCKS[name][1]))
    (tmp_path / "snippet.py").write_text(script(name))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "HF_HOME": str(tmp_path / "hf_home"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    done = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"{name} failed:\n{done.stderr[-4000:]}"
    missing = [path for path in WRITES.get(name, []) if not (tmp_path / path).exists()]
    assert not missing, f"{name} did not write {missing}"


def hf_rtp_commands() -> list[tuple[str, list[str]]]:
    """Every `hf-rtp ...` command of a ```bash block of README.md and docs/*.md (continuation lines joined, comments
    and leading VAR=value settings dropped): (`file:line`, its arguments after `hf-rtp`)."""
    import shlex

    commands = []
    for page in PAGES:
        text = page.read_text()
        for match in re.finditer(r"(?ms)^```bash\n(.*?)^```", text):
            first = text.count("\n", 0, match.start()) + 2
            lines = match.group(1).replace("\\\n", " \n").split("\n")
            joined, start = "", None
            for offset, line in enumerate(lines):
                start = first + offset if start is None else start
                joined += line.replace(" \n", " ")
                if line.endswith(" "):  # a continuation: the next line belongs to this command
                    continue
                words = shlex.split(joined, comments=True)
                while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                    words = words[1:]
                if words[:1] == ["hf-rtp"]:
                    commands.append((f"{page.relative_to(ROOT)}:{start}", words[1:]))
                joined, start = "", None
    return commands


def test_every_documented_hf_rtp_command_parses():
    """A documented command line whose options the CLI no longer takes (renamed, removed, mistyped) fails here, not
    in a reader's terminal: each one goes through the real parser of its subcommand (parsing only, nothing runs)."""
    from hf_rtp.cli import COMMANDS, build_parser

    commands = hf_rtp_commands()
    assert len(commands) > 10, commands  # the blocks were found
    failed = []
    for where, args in commands:
        command = next((a for a in args if not a.startswith("-")), None)
        argv = args if command in COMMANDS else ["distill", *args]
        try:
            build_parser(command if command in COMMANDS else "distill").parse_args(argv)
        except SystemExit as error:
            if error.code:  # --help exits 0
                failed.append(f"{where}: hf-rtp {' '.join(args)}")
    assert not failed, "\n".join(failed)
