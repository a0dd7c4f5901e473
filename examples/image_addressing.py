"""A memory addressed by images (sec 5.3.2): distil it with a timm query head, share it, recall from five pictures.

    python examples/image_addressing.py                                # embedded digits, a few minutes on a CPU
    python examples/image_addressing.py --dataset ylecun/mnist --max-minutes 20 --push-to-hub user/mnist-by-images

1. Distil: the Distiller trains the query head (encoder + projection), the bases and the addressing together,
   episode by episode (N classes, k shots each make N queries; the inner network trains on what they recall).
2. Share: save_pretrained / push_to_hub write one model.safetensors with the head's weights and a model card.
3. Recall: load it back, show it five pictures of each of two classes, get a datasets.Dataset, train on it.
"""

import argparse

import torch

from hf_rtp import AddressableMemory, distill_memory
from hf_rtp.data import DataConfig
from hf_rtp.distill import DistillConfig
from hf_rtp.evaluate import EvalConfig, accuracy_on, dataset_tensors, train_from_scratch

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--dataset", default="digits")
parser.add_argument("--encoder", default="resnet10t", help="any timm model name")
parser.add_argument("--encoder-start", default="supervised", choices=["random", "pretrained", "supervised"],
                    help="where the encoder starts: supervised on the training split first (the default: seconds on "
                         "the digits), timm's pretrained weights (online, or --encoder-weights FILE), or random")
parser.add_argument("--encoder-weights", default=None, help="local weights for --encoder-start pretrained")
parser.add_argument("--query-dim", type=int, default=8, help="width of the query space (its addressing costs "
                                                            "query-dim x bases floats per recalled image)")
parser.add_argument("--num-bases", type=int, default=8)
parser.add_argument("--steps", type=int, default=300, help="outer steps (or fewer, within --max-minutes)")
parser.add_argument("--max-minutes", type=float, default=3)
parser.add_argument("--final-models", type=int, default=20, help="few-shot test episodes of the final score")
parser.add_argument("--output-dir", default="outputs/image-addressing")
parser.add_argument("--push-to-hub", default=None, help="Hub repo id to share the memory under (needs a token)")
args = parser.parse_args()

train, test = DataConfig(args.dataset).load()
torch.manual_seed(0)
memory = AddressableMemory.for_dataset(train, ipc=1, num_bases=args.num_bases, query_encoder=args.encoder,
                                      query_dim=args.query_dim)
print(f"memory: {memory.config.storage_floats()} floats of budget, query head {memory.config.query_head_floats()} floats")

# 1. Distil: 5-way episodes with 1 shot per class; validation and the final score are few-shot episodes too. The
#    memory starts from real images (the default for memories addressed by images) and its encoder from --encoder-start
#    (then frozen, the default after a supervised or pretrained start: only projection, bases and addressing learn).
config = DistillConfig(steps=args.steps, max_minutes=args.max_minutes, unroll_steps=20, learner_width=32,
                       classes_per_step=5, shots=1, synthetic_per_class=4, real_per_class=16, optimizer="adam",
                       lr=0.01, eval_every=20, eval_epochs=100, eval_width=32, final_models=args.final_models,
                       final_epochs=100, query_encoder_start=args.encoder_start, query_encoder_weights=args.encoder_weights,
                       output_dir=args.output_dir, overwrite_output_dir=True, progress=True)
memory = distill_memory(config, memory, train, test=test)
print(f"few-shot test accuracy: {100 * memory.config.evaluation['accuracy']['mean']:.1f}% "
      f"({memory.config.evaluation['few_shot']}, {memory.config.evaluation['models']} episodes)")

# 2. Share it (the folder is what a push uploads), and load it back.
if args.push_to_hub:
    print("pushed:", memory.push_to_hub(args.push_to_hub))
    memory = AddressableMemory.from_pretrained(args.push_to_hub)
else:
    memory = AddressableMemory.from_pretrained(f"{args.output_dir}/memory")

# 3. Five pictures of each of two classes it is shown (never their labels): a training set for a 2-way classifier.
generator = torch.Generator().manual_seed(1)
a, b = 3, 8
shots_a, _ = test.sample([a], 5, generator)
shots_b, _ = test.sample([b], 5, generator)
recalled = memory.recall(images=torch.cat([shots_a, shots_b]), labels=["three"] * 5 + ["eight"] * 5)
print(recalled)
images, labels = dataset_tensors(recalled)
net = train_from_scratch(images, labels, 2, EvalConfig(epochs=100, width=32, progress=False), seed=0)
rows = (test.labels == a) | (test.labels == b)
truth = (test.labels[rows] == b).long()
print(f"2-way classifier trained only on the recall: {100 * accuracy_on(net, test.images[rows], truth):.1f}% on the "
      f"test images of those two classes")
