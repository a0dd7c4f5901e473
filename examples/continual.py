"""Continual learning by compress-then-recall: keep each task of a stream as a small memory, rebuild a classifier
for all of them at the end, and publish the memories as one bank.

    python examples/continual.py --dataset ../shared/data/mnist     # Rotated MNIST, 20 tasks (about 10 CPU-minutes)
    python examples/continual.py --stream permutations --tasks 5 --push-to-hub user/permuted-mnist-bank

Each task streams once in minibatches of 10; the free part of a buffer of 156,800 floats (200 MNIST images) holds
its raw images while its memory (1/22 of the buffer, counted from the task's start) is distilled, and at the task's
end the raw images are dropped. At the end a fresh MLP trains on everything the bank recalls (with Gaussian noise
on the recalled images, `--retrain-noise 2.0`: what made the joint mode beat replay on Rotated MNIST) and is scored
on every task. The bank's bank.json records the stream (source data and each task's transform): `task_test_set` rebuilds any
task's test set from it.
"""

import argparse

from hf_rtp import MemoryBank
from hf_rtp.continual import StreamConfig, task_accuracy, task_test_set
from hf_rtp.continual import ContinualConfig, make_method, run_stream
from hf_rtp.options import add_options, build, given

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
add_options(parser, StreamConfig)  # --stream, --dataset (e.g. ../shared/data/mnist), --tasks, ...
add_options(parser, ContinualConfig, skip=("method", "seed", "lr", "replay_batch", "ewc_lambda"))
parser.add_argument("--output", default="outputs/continual-bank", help="where the bank of memories is saved")
parser.add_argument("--push-to-hub", default=None, help="also upload the bank to this Hub repo")
args = parser.parse_args()

stream = build(StreamConfig, given(args, StreamConfig)).load()
# each memory 1/22 of the buffer as in the 20-task stream; Gaussian noise (std 2) on the recalled images while the
# final network trains, so it stops reading one task's features into another's images (docs/continual.md)
options = {"memory_share": 22, "retrain_noise": 2.0, **given(args, ContinualConfig)}
learner = make_method(build(ContinualConfig, {**options, "method": "compress-then-recall"}), stream)
result = run_stream(learner, stream, progress=print)  # the single pass, then a fresh MLP on everything recalled
print(f"retained accuracy over {len(stream.tasks)} tasks: {100 * result['retained_accuracy']:.2f}% "
      f"(buffer {result['buffer_floats']:,} floats; {sum(result['minutes_per_task']):.1f} minutes of distillation)")

bank = learner.bank
for task, accuracy in zip(stream.tasks, result["accuracy"]):
    bank.accuracy[task.name] = accuracy
bank.save_pretrained(args.output)
if args.push_to_hub:
    print(bank.push_to_hub(args.push_to_hub))

# Later, anywhere: load the bank and rebuild a classifier from any of its tasks.
bank = MemoryBank.from_pretrained(args.output)
recalled = bank.recall(tasks=bank.tasks[:3])  # a datasets.Dataset: pixel_values, label (the digits), task
print(recalled)
first = stream.tasks[0]
print(f"{first.name} scored by the final network: {100 * task_accuracy(learner.classifier(), first):.2f}%")
test = task_test_set(bank.stream, first.name)  # the task's test set, rebuilt from what the bank recorded
print(f"{first.name}: {len(test)} test images rebuilt from {args.output}/bank.json")
