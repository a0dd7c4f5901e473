"""Few-shot recall by images (Table 4 of the paper, at our scale): N-way k-shot episodes of the test split.

    python bench/few_shot.py IMAGE_MEMORY LABEL_MEMORY --episodes 100 --way 5 10 --shots 1 5
    python bench/few_shot.py IMAGE_MEMORY LABEL_MEMORY --held-out 5 6 7 8 9     # classes never seen in distillation

Per episode (classes and shots drawn from the test split, seeded), three ways to build a classifier for its N
classes from its k shots per class (the shots' labels are never shown to a memory):
- image addressing: the image-addressed memory recalls r images per class from the mean query of its shots; a
  fresh ConvNet (the protocol's, `--learner-width`) trains on them;
- nearest neighbour: a classifier network (the memory's query-encoder architecture, trained on the memory's
  training classes) embeds shots and test images; each test image takes the class of the nearest shot prototype;
- classify-then-recall: the same classifier labels each class's shots (summed log-probabilities), the
  label-addressed memory recalls r' images of that label, and a fresh ConvNet trains on them.
Two reference columns, which store nothing (`--methods` to add them): `shots alone` trains the fresh ConvNet on the
shots themselves (each class's k shots repeated to r images); `shots in the memory's span` on each shot's nearest
image in the span of the image memory's K (upsampled) bases, normalised as recall is: no recall (eqn 2 is a linear
combination of those bases) can be closer to a shot. A reference, not a proof of a ceiling: r different recalls
could still train a better network than r copies of the nearest one.
Both networks are scored on up to `--test-per-class` other test images of each episode class. Reported: mean and
95% interval (1.96 std / sqrt(episodes)) over episodes, with each memory's stored floats and the head's weights.
Writes bench/results/few_shot.json (few_shot_held_out.json with --held-out; --merge adds settings). With --held-out,
`--validation` draws the episodes from the training split's images of those classes, which the memory never saw:
the split on which settings for new classes are chosen (few_shot_held_out_validation.json). `--methods`
runs only some columns and `--label` names the image-addressing column, so a second image-addressed memory (another
encoder start) joins a table next to the first on the same episodes; with --merge, a row keeps the columns this run
did not compute, and every column records the command and the memory it came from.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from common import RESULTS, add_result_options, command_line, default_device, repo_relative, resolve_dataset, write_result


METHODS = ("image addressing", "nearest neighbour", "classify-then-recall")
REFERENCES = ("shots alone", "shots in the memory's span")


def features(net, images, device):
    import torch

    with torch.no_grad():
        return net.forward_head(net.forward_features(images.to(device)), pre_logits=True)


def nearest_in_span(memory, images):
    """Each image's nearest recallable image: recall (eqn 2 then `normalize_output`) is a combination of the K bases
    at full size, shifted and scaled to the data's per-image mean and std, so the nearest one is the centred image's
    least-squares projection on the centred bases, normalised the same way (at a fixed std, the nearest image is
    the one most correlated with it). No recall is closer."""
    import torch

    def centred(x):
        return x - x.mean(1, keepdim=True)

    with torch.no_grad():
        span = centred(memory.upsample(memory.bases.detach()).flatten(1).double())  # (K, C*H*W)
        flat = centred(images.to(span.device).flatten(1).double())
        coefficients = torch.linalg.lstsq(span.T, flat.T).solution.T
        return memory.normalize_output((coefficients @ span).to(images.dtype).view_as(images))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image_memory", help="an image-addressed memory (folder or Hub id)")
    parser.add_argument("label_memory", help="a label-addressed memory of the same storage budget")
    parser.add_argument("--dataset", default=None, help="default: the image memory's (MNIST's local copy when present)")
    parser.add_argument("--way", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--held-out", nargs="*", default=None,
                        help="test classes (names) the image memory never saw; default: its own classes")
    parser.add_argument("--validation", action="store_true",
                        help="draw the --held-out episodes from the training split instead of the test split: images "
                             "of classes the memory never saw, a validation split to choose settings on "
                             "(writes few_shot_held_out_validation.json)")
    parser.add_argument("--learner-width", type=int, default=32)
    parser.add_argument("--learner-epochs", type=int, default=100)
    parser.add_argument("--classifier-epochs", type=int, default=1)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the fresh learners (the same networks up to float rounding, faster on a CPU)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS + REFERENCES),
                        help="which columns to compute (default: the three methods; the references only when named)")
    parser.add_argument("--label", default="image addressing",
                        help="the image-addressing column's name (e.g. 'image addressing, supervised start')")
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)
    add_result_options(parser, RESULTS / "few_shot.json", mergeable=True)
    args = parser.parse_args()
    if args.held_out and set(args.methods) <= {"classify-then-recall"}:
        parser.error(f"none of --methods {args.methods} applies to --held-out classes (a label memory cannot recall "
                     f"classes it never saw)")
    if not args.label.startswith("image addressing"):  # the report and the tables find the column by this prefix
        parser.error(f"--label must start with 'image addressing', got {args.label!r}")
    if args.validation and not args.held_out:
        parser.error("--validation draws episodes of --held-out classes from the training split; the memory's own "
                     "classes were distilled on it (name the held-out classes)")
    if args.held_out and args.output == str(RESULTS / "few_shot.json"):  # its own table
        args.output = str(RESULTS / f"few_shot_held_out{'_validation' if args.validation else ''}.json")

    import numpy as np
    import torch

    from hf_rtp import AddressableMemory
    from hf_rtp.data import load_train_test
    from hf_rtp.episodes import draw_episodes, episode_accuracy
    from hf_rtp.query_head import train_supervised
    from hf_rtp.evaluate import EvalConfig, accuracy_on, train_from_scratch

    device = args.device or default_device()
    by_images = AddressableMemory.from_pretrained(args.image_memory).to(device).eval()
    by_labels = AddressableMemory.from_pretrained(args.label_memory).to(device).eval()
    if not by_images.config.addressed_by_images or by_labels.config.addressed_by_images:
        raise SystemExit("few_shot.py: the first memory must have a query head and the second be addressed by labels")
    dataset = resolve_dataset(args.dataset or by_images.config.dataset_name)
    train, test = load_train_test(dataset, space=by_images.pixel_space())
    seen = by_images.config.class_names  # the classes the image memory (and the classifier) were trained on
    if args.validation:  # the held-out classes' training images: the memory and the classifier never saw them
        test = train
    train = train.with_classes(seen)
    test = test.with_classes(args.held_out) if args.held_out else test.with_classes(seen)
    if args.held_out and set(args.held_out) & set(seen):
        raise SystemExit(f"few_shot.py: --held-out {args.held_out} overlaps the memory's classes {seen}")
    classifier = None
    if set(args.methods) & {"nearest neighbour", "classify-then-recall"}:  # their classifier (the others need none)
        started = time.perf_counter()
        classifier = train_supervised(by_images.config.query_encoder, by_images.config.query_encoder_kwargs, train,
                                      args.classifier_epochs, device, args.seed)  # the supervised start's recipe
        print(f"classifier {by_images.config.query_encoder} trained in {time.perf_counter() - started:.0f} s", flush=True)
    learner = EvalConfig(epochs=args.learner_epochs, width=args.learner_width, progress=False, seed=args.seed,
                         compile=args.compile)
    label_names = by_labels.config.class_names

    def classify_then_recall(episode) -> float:
        n, k = episode.shots.shape[:2]
        with torch.no_grad():
            scores = classifier(episode.shots.flatten(0, 1).to(device)).log_softmax(-1).view(n, k, -1).sum(1)
            # the classifier's class names -> the label memory's ids (both trained on the same classes)
            picked = [label_names.index(seen[int(c)]) for c in scores.argmax(-1)]
            images = by_labels(labels=torch.tensor(picked, device=device)).images
        labels = torch.arange(n, device=device).repeat_interleave(by_labels.config.images_per_query)
        net = train_from_scratch(images, labels, n, learner, args.seed, device)
        return accuracy_on(net, episode.images, episode.labels, device=device)

    def nearest_neighbour(episode) -> float:
        n, k = episode.shots.shape[:2]
        prototypes = features(classifier, episode.shots.flatten(0, 1), device).view(n, k, -1).mean(1)
        queries = features(classifier, episode.images, device)
        nearest = torch.cdist(queries, prototypes).argmin(1)
        return float((nearest.cpu() == episode.labels.cpu()).float().mean())

    def shots_as_training_set(shots, episode) -> float:  # (N, k, ...) images -> r per class, a fresh ConvNet
        n, k = shots.shape[:2]
        r = by_images.config.images_per_query
        images = shots[:, torch.arange(r) % k].flatten(0, 1)
        net = train_from_scratch(images, torch.arange(n, device=device).repeat_interleave(r), n, learner, args.seed, device)
        return accuracy_on(net, episode.images, episode.labels, device=device)

    def in_span(episode) -> float:
        shots = episode.shots.to(device)
        return shots_as_training_set(nearest_in_span(by_images, shots.flatten(0, 1)).view_as(shots), episode)

    methods = {"image addressing": lambda e: episode_accuracy(by_images, e, learner, device),
               "nearest neighbour": nearest_neighbour,
               "shots alone": lambda e: shots_as_training_set(e.shots.to(device), e),
               "shots in the memory's span": in_span}
    if not args.held_out:  # the label memory cannot recall classes it was never distilled on
        methods["classify-then-recall"] = classify_then_recall
    methods = {name: method for name, method in methods.items() if name in args.methods}
    sources = {"image addressing": {"memory": repo_relative(args.image_memory),
                                    "start": by_images.config.query_encoder_start or "random",
                                    "floats": by_images.config.storage_floats(),
                                    "head_floats": by_images.config.query_head_floats()},
               "classify-then-recall": {"memory": repo_relative(args.label_memory),
                                        "floats": by_labels.config.storage_floats()},
               "nearest neighbour": {}, "shots alone": {},
               "shots in the memory's span": {"memory": repo_relative(args.image_memory),
                                              "bases": by_images.config.num_bases}}
    row_key = lambda r: (r["way"], r["shots"], r["held_out"])  # noqa: E731
    earlier, inherited = {}, {}
    if args.merge and Path(args.output).exists():  # columns of an earlier run on the same episodes stay in their row
        before = json.loads(Path(args.output).read_text())
        mine = {"seen": seen, "held_out": args.held_out or [], "episodes": args.episodes,
                "episodes_split": "train" if args.validation else "test"}
        theirs = {k: before.get(k, "test" if k == "episodes_split" else None) for k in mine}  # older: test
        if theirs != mine:
            raise SystemExit(f"few_shot.py: --merge into {args.output}: its rows were scored on other episodes "
                             f"({theirs}, this run {mine}); pass another --output")
        earlier = {row_key(r): r for r in before.get("rows", [])}
        # columns written before columns recorded their memory: the earlier record's image memory
        inherited = {"image addressing": {"memory": before.get("image_memory"), "start": "random",
                                          "floats": before.get("image_memory_floats"),
                                          "head_floats": before.get("query_head_floats")},
                     "classify-then-recall": {"memory": before.get("label_memory"),
                                              "floats": before.get("label_memory_floats")}}
    rows = []
    record = {"image_memory": repo_relative(args.image_memory), "label_memory": repo_relative(args.label_memory),
              "dataset": args.dataset or by_images.config.dataset_name,
              "held_out": args.held_out or [], "seen": seen, "episodes": args.episodes,
              "episodes_split": "train" if args.validation else "test",
              "image_memory_floats": by_images.config.storage_floats(),
              "label_memory_floats": by_labels.config.storage_floats(),
              "query_head_floats": by_images.config.query_head_floats(), "query_encoder": by_images.config.query_encoder,
              "learner": f"ConvNet-{args.learner_width} x {args.learner_epochs} epochs",
              "classifier_epochs": args.classifier_epochs, "rows": rows}
    for way in args.way:
        for shots in args.shots:
            if way > test.num_classes:
                print(f"skip {way}-way: only {test.num_classes} test classes")
                continue
            episodes = draw_episodes(test, way, shots, args.test_per_class, args.episodes, args.seed + 1000 * way + shots)
            row = {"way": way, "shots": shots, "held_out": bool(args.held_out), "learner_compiled": args.compile,
                   "command": command_line()}
            old = earlier.get(row_key(row))
            if old is not None:  # the earlier columns, each with the command (and memory) that computed it
                row = {**{k: ({**inherited.get(k, {}), **v, "command": v.get("command", old["command"])}
                              if isinstance(v, dict) else v) for k, v in old.items()}, **row}
            for name, method in methods.items():
                started = time.perf_counter()
                runs = [method(e) for e in episodes]
                column = args.label if name == "image addressing" else name
                row[column] = {"mean": float(np.mean(runs)), "std": float(np.std(runs)),
                               "ci95": 1.96 * float(np.std(runs)) / math.sqrt(len(runs)), "runs": runs,
                               "seconds": time.perf_counter() - started, "learner_compiled": args.compile,
                               **sources[name], "command": command_line()}
                print(f"{way}-way {shots}-shot {column:22s} {100 * row[column]['mean']:.2f} +- "
                      f"{100 * row[column]['ci95']:.2f}%  ({row[column]['seconds']:.0f} s)", flush=True)
            rows.append(row)
            write_result(args.output, record, args, device=device, row_key=row_key)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
