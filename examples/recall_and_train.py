"""Recall a saved (or Hub) memory into a `datasets.Dataset` and train a network on it from scratch.

    python examples/recall_and_train.py outputs/distill/memory
    python examples/recall_and_train.py user/mnist-ipc1 --learner resnet10t --epochs 300

Plain PyTorch on purpose: the recalled Dataset is an ordinary `datasets.Dataset` (float32 pixel_values +
ClassLabel label), so any training loop, DataLoader or the HF Trainer can use it.
"""

import argparse

import torch
import torch.nn.functional as F

from hf_rtp import AddressableMemory
from hf_rtp.evaluate import accuracy
from hf_rtp.learners import create_learner

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("memory", help="saved memory folder or Hub id")
parser.add_argument("--learner", default="convnet", help="convnet, convnet-<width>, or any timm model name")
parser.add_argument("--epochs", type=int, default=300)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

torch.manual_seed(args.seed)
memory = AddressableMemory.from_pretrained(args.memory)
recalled = memory.recall()  # datasets.Dataset: pixel_values (C, H, W) float32, label ClassLabel
print(recalled)
loader = torch.utils.data.DataLoader(recalled.with_format("torch", columns=["pixel_values", "label"]),
                                     batch_size=256, shuffle=True)

c, h, w = memory.config.image_shape
net = create_learner(args.learner, c, memory.config.num_classes, (h, w))
optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
for epoch in range(args.epochs):
    for batch in loader:
        loss = F.cross_entropy(net(batch["pixel_values"]), batch["label"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

# The memory records its dataset and pixel space: its test split, put in that space, in one call.
test = memory.load_split("test")
print(f"{args.learner} trained on {len(recalled)} recalled images: {100 * accuracy(net.eval(), test):.2f}% test accuracy")
