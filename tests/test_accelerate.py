"""Two real CPU processes under `accelerate launch`: ranks stay identical, and 2 processes x 1 unroll per step
equal 1 process x 2 unrolls per step (same seeds, same thread count, so bit for bit)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).parent / "scripts" / "distill_ranks.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(command, **env):
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **env}
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_two_processes_equal_one_process_with_two_unrolls(tmp_path):
    # `--cpu --num_processes 2` would silently run one process: --multi_gpu with ACCELERATE_USE_CPU gives two.
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]
    out = run([*launch, str(SCRIPT), str(tmp_path / "two"), "1"], ACCELERATE_USE_CPU="1")
    assert "rank 0 of 2 done" in out and "rank 1 of 2 done" in out
    run([sys.executable, str(SCRIPT), str(tmp_path / "one"), "2"])
    rank0, rank1 = load_file(tmp_path / "two" / "rank0.safetensors"), load_file(tmp_path / "two" / "rank1.safetensors")
    single = load_file(tmp_path / "one" / "rank0.safetensors")
    start = load_file(tmp_path / "one" / "run" / "memory" / "model.safetensors")
    for key in ("bases", "addressing"):
        assert torch.equal(rank0[key], rank1[key]), f"ranks diverged in {key}"
        assert torch.equal(rank0[key], single[key]), f"2x1 != 1x2 in {key}"
        assert torch.equal(single[key], start[key])  # what was saved is what the run ended with
