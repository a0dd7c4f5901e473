"""Every examples/*.py runs in the test suite, on tiny settings, as its docstring says to run it: a documented command can
no longer crash on its defaults. Most examples have their test next to the feature they show; this file runs those that
have none, and checks that every example is run by some test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hf_rtp import AddressableMemory
from hf_rtp.data import DataConfig

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

# The example's second documented command loads a Hub id: this wrapper (argv: HF_HOME FOLDER HUB_ID EXAMPLE OPTIONS...)
# pushes the saved memory to the fake Hub of tests/fake_hub.py, then runs the example with HUB_ID OPTIONS in the same
# process (the fake Hub lives in one process).
HUB_WRAPPER = """
import runpy, sys
from tests.fake_hub import use_fake_hub
from hf_rtp import AddressableMemory
with use_fake_hub(sys.argv[1]):
    AddressableMemory.from_pretrained(sys.argv[2]).push_to_hub(sys.argv[3])
    sys.argv = [sys.argv[4], sys.argv[3], *sys.argv[5:]]  # examples/recall_and_train.py HUB_ID OPTIONS...
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_every_example_is_run_by_a_test():
    """A new example cannot go untested: each examples/X.py is named as `examples/X.py` or `"examples" / "X.py"` (the
    way the tests build its path) in some tests/test_*.py."""
    assert EXAMPLES, "no examples/*.py"
    tests = {path.name: path.read_text() for path in (ROOT / "tests").glob("test_*.py")}
    untested = [example.name for example in EXAMPLES
                if not any(re.search(rf"""examples(/|["']\s*/\s*["']){re.escape(example.name)}""", text)
                           for text in tests.values())]
    assert not untested, f"examples run by no test (add one here): {untested}"


@pytest.mark.parametrize("command", ["folder", "hub-id"])
def test_recall_and_train_trains_on_a_saved_memory_and_prints_its_test_accuracy(command, tmp_path):
    """examples/recall_and_train.py in its two documented shapes, one epoch each: `python examples/recall_and_train.py
    outputs/distill/memory` (a saved folder, the default ConvNet) and `... user/mnist-ipc1 --learner resnet10t` (a Hub
    id, a timm learner). The memory is a fresh one of the digits (1 image per class, 8 bases), so the test split it
    records loads offline. The example must end by naming the learner, the number of recalled images it trained on
    (all of the memory's) and a test accuracy in [0, 100]."""
    train, _ = DataConfig("digits").load()
    memory = AddressableMemory.for_dataset(train, ipc=1, num_bases=8)
    memory.save_pretrained(tmp_path / "outputs" / "distill" / "memory")
    example = ROOT / "examples" / "recall_and_train.py"
    if command == "folder":
        learner = "convnet"
        argv = [sys.executable, str(example), "outputs/distill/memory", "--epochs", "1"]
        env = ENV
    else:
        learner = "resnet10t"
        argv = [sys.executable, "-c", HUB_WRAPPER, str(tmp_path / "hf_home"), "outputs/distill/memory", "user/mnist-ipc1",
                str(example), "--learner", "resnet10t", "--epochs", "1"]
        env = {**ENV, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    found = re.fullmatch(r"(\S+) trained on (\d+) recalled images: (\S+)% test accuracy", last)
    assert found, f"unexpected last line: {last!r}"
    assert found[1] == learner and int(found[2]) == len(memory.recall())
    assert 0 <= float(found[3]) <= 100, last
