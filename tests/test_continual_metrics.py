"""The numbers continual learning and few-shot results are built from: the replay reservoir's sampling, the RA and
BTI formulas on a hand-made accuracy table, and the episodes every few-shot method is scored on."""

import pytest
import torch

from hf_rtp.continual import backward_transfer, retained_accuracy
from hf_rtp.continual import Reservoir
from hf_rtp.data import ImageClassificationData
from hf_rtp.episodes import draw_episode, draw_episodes

# ---- the reservoir (Vitter's algorithm R) -------------------------------------------------------------------


def reservoir_counts(items: int, capacity: int, trials: int) -> torch.Tensor:
    """How often each of `items` offered images (image i is the scalar i) ends up held, over `trials` seeds."""
    stream = torch.arange(items, dtype=torch.float32).view(items, 1, 1, 1)
    counts = torch.zeros(items)
    for seed in range(trials):
        reservoir = Reservoir(capacity, (1, 1, 1), torch.Generator().manual_seed(seed))
        half = items // 2  # offered in two minibatches, as a stream does
        reservoir.add(stream[:half], torch.arange(half))
        reservoir.add(stream[half:], torch.arange(half, items))
        held = reservoir.images[: len(reservoir)].flatten().long()
        assert len(reservoir) == capacity and len(set(held.tolist())) == capacity  # full, no image twice
        assert torch.equal(reservoir.labels[: len(reservoir)], held)  # each label stays with its image
        counts[held] += 1
    return counts


def test_the_reservoir_holds_every_offered_image_with_the_same_probability():
    items, capacity, trials = 20, 10, 2000
    counts = reservoir_counts(items, capacity, trials)
    expected = trials * capacity / items  # 1000: each image is held with probability k / N = 0.5
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    # 19 degrees of freedom: P(chi2 > 40) < 0.003 for a uniform sample (whose statistic is about half a chi2_19 here,
    # as a count's variance is T p (1 - p)); keeping the first (or the last) k gives 20,000
    assert chi2 < 40, (chi2, counts.tolist())
    frequency = counts / trials
    # No primacy or recency: the k images that filled the reservoir are held as often as the later ones (the sd of
    # the difference is 0.005 here). Drawing the slot from [0, seen) instead of [0, seen] holds them 9/19 = 0.474
    # of the time against 10/19 = 0.526 for the rest: a difference of 0.053.
    assert abs(float(frequency[:capacity].mean() - frequency[capacity:].mean())) < 0.025, frequency.tolist()
    assert abs(float(frequency.mean()) - 0.5) < 1e-6  # exactly k held each time


def test_a_reservoir_keeps_everything_until_it_is_full():
    reservoir = Reservoir(10, (1, 1, 1), torch.Generator().manual_seed(0))
    reservoir.add(torch.arange(7.0).view(7, 1, 1, 1), torch.arange(7))
    assert len(reservoir) == 7 and reservoir.images[:7].flatten().tolist() == list(range(7))


# ---- RA and BTI on a hand-made accuracy table ---------------------------------------------------------------

# Three tasks. just_learned[i]: accuracy on task i right after learning it; final[i]: after the whole stream (the
# last task's two numbers are the same network's, as in a real stream).
JUST_LEARNED = [0.9, 0.8, 0.9]
FINAL = [0.6, 0.7, 0.9]


def test_retained_accuracy_is_the_mean_final_accuracy():
    assert retained_accuracy(FINAL) == pytest.approx(0.7333333333, abs=1e-9)  # (0.6 + 0.7 + 0.9) / 3
    assert retained_accuracy([1.0, 0.0]) == pytest.approx(0.5)


def test_backward_transfer_is_the_mean_change_over_the_first_t_minus_1_tasks_as_gem():
    """GEM (Lopez-Paz & Ranzato 2017) and La-MAML average R[T,i] - R[i,i] over i < T: the last task has had no
    later training to forget under, so it is not counted."""
    assert backward_transfer(FINAL, JUST_LEARNED) == pytest.approx(-0.2, abs=1e-9)  # (-0.3 - 0.1) / 2
    assert backward_transfer([0.95, 0.8], [0.9, 0.8]) == pytest.approx(0.05)  # positive: task 1 helped task 0
    assert backward_transfer([0.5], [0.9]) == 0.0  # one task: nothing came after it


# ---- few-shot episodes --------------------------------------------------------------------------------------

CLASSES_N, PER_CLASS = 6, 7


@pytest.fixture(scope="module")
def unique_images():
    """6 classes x 7 images of one pixel each; image j is the value j, of class j // 7 (so a row names its image)."""
    n = CLASSES_N * PER_CLASS
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)
    return ImageClassificationData(images, torch.arange(n) // PER_CLASS, [f"c{i}" for i in range(CLASSES_N)], [0.0], [1.0],
                                   name="unique", split="test")


def image_ids(x: torch.Tensor) -> list[int]:
    return x.flatten().long().tolist()


def test_an_episode_keeps_shots_and_scored_images_apart_and_labels_in_draw_order(unique_images):
    for seed in range(5):
        episode = draw_episode(unique_images, 4, 2, 3, torch.Generator().manual_seed(seed))
        assert len(episode.classes) == 4 and len(set(episode.classes)) == 4
        assert episode.shots.shape == (4, 2, 1, 1, 1) and episode.images.shape == (4 * 3, 1, 1, 1)
        shots, others = image_ids(episode.shots), image_ids(episode.images)
        assert len(set(shots)) == len(shots) and len(set(others)) == len(others)
        assert set(shots).isdisjoint(others)  # no image is both shown to the memory and scored on
        for label, c in enumerate(episode.classes):  # row `label` of the shots: images of the label-th class drawn
            assert [i // PER_CLASS for i in image_ids(episode.shots[label])] == [c, c]
        # the scored images' labels are 0..N-1, label l meaning the l-th class drawn
        assert [episode.classes[int(l)] for l in episode.labels] == [i // PER_CLASS for i in others]
        assert sorted(set(episode.labels.tolist())) == [0, 1, 2, 3]


def test_an_episode_scores_on_every_other_image_when_asked_for_more(unique_images):
    episode = draw_episode(unique_images, 2, 3, 100, torch.Generator().manual_seed(0))
    assert len(episode.images) == 2 * (PER_CLASS - 3)  # all the rest of each class, none repeated
    assert sorted(image_ids(episode.shots) + image_ids(episode.images)) == sorted(
        i for c in episode.classes for i in range(c * PER_CLASS, (c + 1) * PER_CLASS))
    with pytest.raises(ValueError, match="needs 7 shots and at least one more"):
        draw_episode(unique_images, 2, 7, 1, torch.Generator().manual_seed(0))


def test_episodes_are_a_function_of_the_seed(unique_images):
    """What lets bench/few_shot.py score every method on the same episodes, and the Distiller validate on the same
    ones every time: a list of episodes drawn from one seed is the same list each time it is drawn."""
    def draw(seed):
        return draw_episodes(unique_images, 3, 1, 2, 4, seed)

    first, again, other = draw(7), draw(7), draw(8)
    for a, b in zip(first, again):
        assert a.classes == b.classes and torch.equal(a.shots, b.shots) and torch.equal(a.images, b.images)
        assert torch.equal(a.labels, b.labels)
    assert [image_ids(e.shots) for e in first] != [image_ids(e.shots) for e in other]
    # successive episodes of one list differ (the generator moves on)
    assert len({tuple(image_ids(e.shots)) for e in first}) > 1
