"""The main job (`hf-rtp` with no arguments) timed end to end; writes bench/results/main_job.json.

    python bench/main_job.py
"""

import json
import time
from pathlib import Path

from machine import describe

from hf_rtp import AddressableMemoryConfig
from hf_rtp.cli import main

RESULTS = Path(__file__).parent / "results"
out = RESULTS / "runs" / "main-job"
start = time.perf_counter()
main(["distill", "--output-dir", str(out), "--no-progress", "--overwrite-output-dir"])
minutes = (time.perf_counter() - start) / 60
config = json.loads((out / "memory" / "config.json").read_text())
record = {"command": "HF_HUB_OFFLINE=1 hf-rtp", "machine": describe("cpu"),
          "minutes": round(minutes, 2), "dataset": "digits", "ipc": config["ipc"], "num_bases": config["num_bases"],
          "images_per_query": config["images_per_query"], "downsample": config["downsample"],
          "storage_floats": AddressableMemoryConfig.from_pretrained(out / "memory").storage_floats(),
          "evaluation": config["evaluation"], "distillation": config["distillation"]}
(RESULTS / "main_job.json").write_text(json.dumps(record, indent=1))
print(f"main job: {minutes:.1f} min, wrote {RESULTS / 'main_job.json'}")
