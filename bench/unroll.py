"""Speed and peak memory of one outer step: the memory-constant engine vs the whole-graph reference.

MNIST-shaped data (1x28x28, 10 classes), ConvNet-128, K=16 bases, r=29 (IPC 1), `--per-class` recalled images
per class per inner step, a real batch of `--real-per-class` images per class. For each T, every implementation
runs in its own process (clean peak-memory reading): first the floor, T plain training steps of a standard
`nn.Module` ConvNet (nn.Conv2d / nn.GroupNorm / nn.Linear, loss.backward(), torch.optim.SGD) on the same
minibatches, which any implementation of the method also runs; then `--repeats` outer steps.

Implementations: `engine` (eager), `engine-compiled` (torch.compile; the default path where a compiler exists, its
one-off compile timed apart), `engine-cudagraphs` (compile mode reduce-overhead: CUDA graphs, GPU only),
`engine-default-malloc` (eager with glibc's default malloc settings, to show what keeping freed memory saves), and
`reference` (whole-graph autograd). Minor page faults and system time per outer step are recorded on the CPU.
Prints a table and writes bench/results/unroll.json.

    python bench/unroll.py                       # T in 10 50 150, engine and reference
    python bench/unroll.py --steps 10 50 --impl engine
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS, add_result_options, write_result


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def standard_convnet(width: int = 128, classes: int = 10):
    """The ConvNet as a plain nn.Module (28 px grey input padded to 32 by the first conv, 3 blocks of conv ->
    instance norm -> ReLU -> avg-pool, linear head): the network a from-scratch training loop would use."""
    from torch import nn

    layers, channels = [], 1
    for i in range(3):
        layers += [nn.Conv2d(channels, width, 3, padding=3 if i == 0 else 1), nn.GroupNorm(width, width), nn.ReLU(), nn.AvgPool2d(2)]
        channels = width
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * 4 * 4, classes))


def worker(args) -> dict:
    import torch
    import torch.nn.functional as F

    from hf_rtp import AddressableMemory, AddressableMemoryConfig
    from hf_rtp.learners import ConvNet
    from hf_rtp.objectives import label_inputs
    from hf_rtp.unroll import InnerLoop

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)  # GPU work is asynchronous: time what has finished
    names = [str(i) for i in range(10)]
    memory = AddressableMemory(AddressableMemoryConfig.for_budget((1, 28, 28), names, ipc=1, num_bases=16, downsample=2)).to(device)
    net = ConvNet(1, 10, 28, width=128).to(device)
    g = torch.Generator().manual_seed(0)
    classes = torch.arange(10, device=device)
    r, s, T = memory.config.images_per_query, args.per_class, args.T
    picks = torch.stack([torch.rand(10, r, generator=g).argsort(1)[:, :s] for _ in range(T)]).to(device)
    labels = classes.repeat_interleave(s)
    real = (torch.randn(10 * args.real_per_class, 1, 28, 28, generator=g).to(device),
            torch.arange(10, device=device).repeat_interleave(args.real_per_class))
    # The Distiller's own set-up of an unroll (label_inputs, InnerLoop.run): the same recall, real-batch chunking and engine.
    compiled = args.impl in ("engine-compiled", "engine-cudagraphs")
    inner = InnerLoop(net, lr=0.01, momentum=0.9, compile=compiled,
                      compile_mode="reduce-overhead" if args.impl == "engine-cudagraphs" else None,
                      keep_memory=args.impl != "engine-default-malloc")

    def step_data(t):
        return memory.images_for_labels(classes, picks[t]), labels

    def fresh(generator):
        return [p.to(device) for p in net.init_params(generator)]

    compile_seconds = None
    baseline = rss_mb()
    # The floor: T plain SGD-momentum steps of a standard nn.Module ConvNet on the same minibatches, no meta-gradient
    # (on a GPU the second of two passes counts, so library start-up is not in it).
    with torch.no_grad():
        batches = [step_data(t) for t in range(T)]
    plain = standard_convnet().to(device)
    for _ in range(2 if cuda else 1):
        optimizer = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9)
        sync()
        start = time.perf_counter()
        for x, y in batches:
            optimizer.zero_grad()
            F.cross_entropy(plain(x), y).backward()
            optimizer.step()
        sync()
        floor = time.perf_counter() - start
    del plain, optimizer
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        cuda_baseline = torch.cuda.memory_allocated(device) / 2**20

    def run(init, steps=T):
        reference = args.impl == "reference"
        return inner.run(label_inputs(memory, classes, picks[:steps], *real), init, reference=reference)

    if compiled:  # compile once, outside the timing (a one-off per input shape)
        start = time.perf_counter()
        run(fresh(g), steps=1)
        compile_seconds = time.perf_counter() - start
    times, faults, system = [], [], []
    for i in range(args.repeats):
        init = fresh(torch.Generator().manual_seed(i))
        sync()
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        result = run(init)
        sync()
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_SELF)
        faults.append(after.ru_minflt - before.ru_minflt)
        system.append(after.ru_stime - before.ru_stime)
        assert all(torch.isfinite(gr).all() for gr in result.grads)
        del result
    row = {
        "impl": args.impl, "T": T, "device": str(device), "seconds_per_outer_step": min(times), "all_seconds": times,
        "plain_steps_seconds": floor, "ratio_to_plain_steps": min(times) / floor,
        "peak_rss_mb": peak_rss_mb(), "peak_above_setup_mb": peak_rss_mb() - baseline,
        "minor_faults_per_step": faults[times.index(min(times))], "system_seconds_per_step": system[times.index(min(times))],
        "compile_seconds": compile_seconds, "synthetic_per_step": 10 * s, "real_batch": 10 * args.real_per_class, "threads": args.threads,
    }
    if cuda:  # the memory that matters on a GPU is the device's, not the host's
        row["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        row["peak_cuda_above_setup_mb"] = row["peak_cuda_mb"] - cuda_baseline
    row["peak_mb"] = row["peak_cuda_mb"] if cuda else row["peak_rss_mb"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 50, 150], help="unroll lengths T")
    parser.add_argument("--impl", nargs="+", default=["engine", "engine-compiled", "engine-default-malloc", "reference"],
                        choices=["engine", "engine-compiled", "engine-cudagraphs", "engine-default-malloc", "reference"])
    parser.add_argument("--per-class", type=int, default=4, help="recalled images per class per inner step")
    parser.add_argument("--real-per-class", type=int, default=64, help="real images per class in the outer loss")
    parser.add_argument("--repeats", type=int, default=2, help="outer steps timed per setting (the fastest counts)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda; on cuda, peak memory is the GPU's")
    parser.add_argument("--reference-max-gb", type=float, default=None,
                        help="skip a reference run whose peak, extrapolated from shorter runs, would exceed this (GB); "
                             "default: 80%% of RAM (of the GPU's memory on cuda)")
    add_result_options(parser, RESULTS / "unroll.json", mergeable=True)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--T", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.impl = args.impl[0]
        print(json.dumps(worker(args)))
        return
    if args.reference_max_gb is None:
        args.reference_max_gb = 0.8 * capacity_gb(args.device)

    rows = []
    for T in args.steps:
        for impl in args.impl:
            if impl == "reference":
                # Its memory grows linearly in T: extrapolate from the two longest runs so far, skip what cannot fit.
                done = sorted((r["T"], r["peak_mb"]) for r in rows if r["impl"] == "reference" and "peak_mb" in r)
                if len(done) >= 2:
                    (t0, m0), (t1, m1) = done[-2], done[-1]
                    predicted = m1 + (m1 - m0) / (t1 - t0) * (T - t1)
                    if predicted / 1024 > args.reference_max_gb:
                        rows.append({"impl": impl, "T": T, "skipped": f"needs about {predicted / 1024:.1f} GB (extrapolated), "
                                     f"over {args.reference_max_gb:.1f} GB", "peak_mb": predicted})
                        print(f"T={T:4d} {impl:9s} skipped: {rows[-1]['skipped']}", flush=True)
                        continue
            command = [sys.executable, __file__, "--worker", "--impl", impl, "--T", str(T), "--per-class", str(args.per_class),
                       "--real-per-class", str(args.real_per_class), "--repeats", str(args.repeats), "--threads", str(args.threads),
                       "--device", args.device]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:  # e.g. a compile mode this machine cannot run: recorded, the others go on
                error = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
                rows.append({"impl": impl, "T": T, "skipped": f"failed: {error}"})
                print(f"T={T:4d} {impl:9s} failed: {done.stderr[-2000:]}", flush=True)
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"T={T:4d} {impl:9s} {r['seconds_per_outer_step']:8.3f} s/outer step  {r['ratio_to_plain_steps']:5.2f}x plain  "
                  f"peak {r['peak_mb']:7.0f} MB", flush=True)

    if args.merge and Path(args.output).exists():  # a rerun of some settings replaces their rows; ratios from all rows
        new = {(r["impl"], r["T"]): r for r in rows}
        old = json.loads(Path(args.output).read_text())["rows"]
        rows = [new.pop((r["impl"], r["T"]), r) for r in old] + list(new.values())
        args.steps = sorted({r["T"] for r in rows})
    by = {(r["impl"], r["T"]): r for r in rows if "peak_mb" in r}  # measured, or extrapolated (not failed)
    print(f"\n{'T':>4} {'impl':>10} {'s/step':>8} {'x plain':>8} {'peak MB':>8}")
    for r in rows:
        if "skipped" in r:
            print(f"{r['T']:>4} {r['impl']:>10}  skipped: {r['skipped']}")
            continue
        print(f"{r['T']:>4} {r['impl']:>10} {r['seconds_per_outer_step']:>8.3f} {r['ratio_to_plain_steps']:>8.2f} {r['peak_mb']:>8.0f}")
    checks = {}
    t_lo, t_hi = min(args.steps), max(args.steps)
    for engine in ("engine", "engine-compiled", "engine-cudagraphs"):
        if "skipped" in by.get((engine, t_hi), {"skipped": 1}):
            continue
        if (engine, t_lo) in by and t_hi != t_lo and "skipped" not in by[engine, t_lo]:
            checks[f"{engine} peak T={t_hi} / T={t_lo}"] = by[engine, t_hi]["peak_mb"] / by[engine, t_lo]["peak_mb"]
        if (engine, t_hi) in by and ("reference", t_hi) in by:
            reference = by["reference", t_hi]
            extrapolated = " (reference extrapolated)" if "skipped" in reference else ""
            checks[f"{engine} / reference peak at T={t_hi}{extrapolated}"] = by[engine, t_hi]["peak_mb"] / reference["peak_mb"]
        timed = [T for T in args.steps if (engine, T) in by and ("reference", T) in by and "skipped" not in by["reference", T]]
        if timed:
            t = max(timed)
            checks[f"{engine} / reference time at T={t}"] = by[engine, t]["seconds_per_outer_step"] / by["reference", t]["seconds_per_outer_step"]
        if (engine, t_hi) in by:
            checks[f"{engine} / plain steps at T={t_hi}"] = by[engine, t_hi]["ratio_to_plain_steps"]
    for name, value in checks.items():
        print(f"{name}: {value:.2f}")
    output = Path(args.output)
    write_result(output, {"device": args.device, "rows": rows, "ratios": checks}, args, device=args.device,
                 row_key=lambda r: (r["impl"], r["T"]))
    print(f"wrote {output} and {plot(rows, output.with_name(output.stem + '_memory.png'), args.device)}")


def capacity_gb(device: str) -> float:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_properties(torch.device(device)).total_memory / 2**30
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30


def plot(rows: list[dict], path: Path, device: str = "cpu") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for impl in dict.fromkeys(r["impl"] for r in rows):
        mine = [r for r in rows if r["impl"] == impl]
        measured = [r for r in mine if "skipped" not in r]
        line, = ax.plot([r["T"] for r in measured], [r["peak_mb"] / 1024 for r in measured], marker="o", label=impl)
        guessed = [r for r in mine if "skipped" in r and "peak_mb" in r]
        if guessed and measured:
            ax.plot([measured[-1]["T"], *[r["T"] for r in guessed]],
                    [measured[-1]["peak_mb"] / 1024, *[r["peak_mb"] / 1024 for r in guessed]],
                    ls="--", color=line.get_color(), label=f"{impl} (extrapolated, does not fit)")
    ax.set_xlabel("unroll length T")
    ax.set_ylabel("peak GPU memory (GB)" if device.startswith("cuda") else "peak RSS (GB)")
    ax.set_title("peak memory of one outer step", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
