"""The main job (`hf-rtp` with no arguments: distil the embedded digits, evaluate) timed end to end; writes
bench/results/main_job.json.

    python bench/main_job.py
"""

from __future__ import annotations

import argparse
import json
import time

from common import RESULTS, add_result_options, default_device, write_result

from hf_rtp import AddressableMemoryConfig
from hf_rtp.cli import main as hf_rtp_main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_result_options(parser, RESULTS / "main_job.json")
    args = parser.parse_args()

    out = RESULTS / "runs" / "main-job"
    start = time.perf_counter()
    hf_rtp_main(["distill", "--output-dir", str(out), "--no-progress", "--overwrite-output-dir"])  # = `hf-rtp`
    minutes = (time.perf_counter() - start) / 60
    config = json.loads((out / "memory" / "config.json").read_text())
    record = {"minutes": round(minutes, 2), "dataset": "digits", "ipc": config["ipc"], "num_bases": config["num_bases"],
              "images_per_query": config["images_per_query"], "downsample": config["downsample"],
              "storage_floats": AddressableMemoryConfig.from_pretrained(out / "memory").storage_floats(),
              "evaluation": config["evaluation"], "distillation": config["distillation"]}
    write_result(args.output, record, args, device=default_device())  # the Distiller's Accelerator picks the same
    print(f"main job: {minutes:.1f} min, wrote {args.output}")


if __name__ == "__main__":
    main()
