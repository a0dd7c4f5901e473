"""How a new memory starts from real images instead of random tables (DistillConfig.init="real").

Random tables (Xavier, the paper's start) recall noise; a start from real images makes the first outer steps count
(chosen on the validation split, see docs/distillation.md). Kept apart from the model: the memory holds
parameters and recalls, this decides where its parameters start.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .data import ImageClassificationData
from .modeling_memory import AddressableMemory


@torch.no_grad()
def init_from_real(memory: AddressableMemory, data: ImageClassificationData, generator: torch.Generator,
                   basis_per_class: int = 100, query_fit: str = "classes") -> None:
    """Start from real images at the data's scale instead of random tables.

    one_hot: each base is a real image of its class, downsampled. learned: the K bases are the top right-singular
    vectors of `basis_per_class` downsampled real images per class (the K-dimensional subspace that holds them
    best), and A_i[c] holds the coordinates of a real image of class c in it, so recall(c, i) starts as that
    image seen through the bases (eqn 2). Bases and coordinates are rescaled against each other so both have
    the same RMS, the balance the random init has. An image-addressed memory has no class to address: its bases
    span real images the same way, its head's projection is fitted to real images' classes and standardised
    (`fit_projection`), and its addressing is the least-squares map from the queries of real images to the
    coordinates of real images of their classes (`fit_addressing`), so a query made from pictures of class c
    starts out recalling about what label c would. With `query_fit="images"` the projection and addressing are
    instead fitted together so that a real image's query recalls that image itself (`fit_head_to_images`): what a
    memory needs for classes it never saw."""
    if query_fit not in ("classes", "images"):
        raise ValueError(f"query_fit must be `classes` or `images`, got {query_fit!r}")
    if query_fit == "images" and not memory.config.addressed_by_images:
        raise ValueError("query_fit='images' fits the query head of a memory addressed by images; this one has none")
    config = memory.config
    if config.query_dim != config.num_classes and not config.addressed_by_images:
        raise ValueError("init_from_real needs a memory addressed by class labels or images, not raw queries")
    memory.check_data(data)
    n, r, k, ds = config.num_classes, config.images_per_query, config.num_bases, config.downsample

    def small(images: torch.Tensor) -> torch.Tensor:
        images = images.to(memory.bases.device, torch.float64)
        return F.avg_pool2d(images, ds) if ds > 1 else images

    def per_class(count: int) -> torch.Tensor:  # (n, count, C, h, w), repeating a class's images if it has fewer
        chosen = []
        for c in range(n):
            x, _ = data.sample([c], count, generator)
            chosen.append(x[torch.arange(count) % len(x)])
        return small(torch.cat(chosen)).view(n, count, *config.base_shape)

    if memory.addressing is None:
        memory.bases.copy_(per_class(r).flatten(0, 1))
        return
    pool = per_class(max(basis_per_class, r)).flatten(0, 1).flatten(1)  # (n * count, d')
    _, _, vh = torch.linalg.svd(pool, full_matrices=False)
    bases = torch.zeros(k, pool.shape[1], dtype=pool.dtype, device=pool.device)
    bases[: min(k, len(vh))] = vh[:k]
    targets = per_class(r).flatten(2)  # (n, r, d'): the images A_i[c] starts from
    coordinates = targets @ bases.T  # (n, r, K)
    if query_fit == "images":
        real, _ = data.sample(range(n), basis_per_class, generator)
        addressing = fit_head_to_images(memory, real, bases, small)
    elif config.addressed_by_images:  # no class to address: the queries of real images of class c take its place
        real, labels = data.sample(range(n), max(1, basis_per_class // 4), generator)
        fit_projection(memory, real, labels, generator)
        addressing = fit_addressing(memory, real, coordinates[labels.to(coordinates.device)])
    else:
        addressing = coordinates.transpose(0, 1)  # (r, n, K): A_i[c] is the i-th image of class c
    # bases and addressing at the same RMS, the balance of the random init (their product, the recall, is unchanged)
    scale = (addressing.pow(2).mean().sqrt() / bases.pow(2).mean().sqrt().clamp_min(1e-12)).sqrt()
    memory.bases.copy_((bases * scale).view_as(memory.bases))
    memory.addressing.copy_(addressing / scale)


@torch.no_grad()
def fit_projection(memory: AddressableMemory, real: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
                   ridge: float = 1e-3) -> None:
    """Start the query head's projection as a least-squares map from the encoder's features to a code of each
    image's class: with d_y >= classes the first `classes` query dimensions regress the one-hot label (the rest
    keep their random directions), with fewer a random unit code per class. The queries of a class then gather
    around its code whatever the encoder (a random encoder's features separate the classes less, a supervised
    one's almost fully), and `fit_addressing` can map each code to its class's images. Then standardised
    (`standardize_queries`), so every query dimension has the same spread."""
    head = memory.query_head
    features = torch.cat([head.features(x.to(memory.bases.device, memory.bases.dtype)) for x in real.split(256)]).double()
    n, d = memory.config.num_classes, memory.config.query_dim
    if d >= n:
        codes = torch.eye(n, d, dtype=features.dtype)
    else:
        codes = torch.randn(n, d, generator=generator, dtype=features.dtype)
        codes = codes / codes.norm(dim=1, keepdim=True)
    targets = codes.to(features.device)[labels.to(features.device)]  # (N, d)
    mean = features.mean(0)
    centred = features - mean
    gram = centred.T @ centred + ridge * len(centred) * torch.eye(centred.shape[1], dtype=centred.dtype,
                                                                   device=centred.device)
    weight = torch.linalg.solve(gram, centred.T @ (targets - targets.mean(0))).T  # (d, F)
    rows = min(n, d)
    projection = head.projection
    projection.weight[:rows] = weight[:rows].to(projection.weight.dtype)
    projection.bias.zero_()
    standardize_queries(memory, real)


@torch.no_grad()
def fit_addressing(memory: AddressableMemory, real: torch.Tensor, coordinates: torch.Tensor,
                   ridge: float = 1e-3) -> torch.Tensor:
    """The addressing (r, d_y, K) whose recall from each real image's query is closest, in least squares, to the
    coordinates it should recall (`coordinates`: (N, r, K), the i-th target image of that image's class): eqn 2
    is linear in the query, so A_i = (Q^T Q + ridge N I)^-1 Q^T T_i with Q the (N, d_y) queries. Where the queries
    separate the classes (a supervised encoder's do), a class's queries start out recalling its r real images, as
    a label-addressed memory does; a random head's queries separate them less, and the fit recalls blends."""
    head = memory.query_head
    q = torch.cat([head(x.to(memory.bases.device, memory.bases.dtype)) for x in real.split(256)]).double()
    targets = coordinates.flatten(1).double()  # (N, r * K)
    gram = q.T @ q + ridge * len(q) * torch.eye(q.shape[1], dtype=q.dtype, device=q.device)
    solution = torch.linalg.solve(gram, q.T @ targets)  # (d_y, r * K)
    r, k = coordinates.shape[1], coordinates.shape[2]
    return solution.view(q.shape[1], r, k).transpose(0, 1)


# The pixel offsets (dx, dy) whose shifted image A_i first recalls under query_fit="images": r identical recalls would
# get identical meta-gradients and stay identical, one-pixel shifts make them differ as augmentation would.
SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1))


@torch.no_grad()
def fit_head_to_images(memory: AddressableMemory, real: torch.Tensor, bases: torch.Tensor, small,
                       ridge: float = 1e-3) -> torch.Tensor:
    """Fit the head's projection and return the addressing (r, d_y, K) under which each real image's query recalls
    that image itself, seen through the (orthonormal, flattened) `bases`: A_i the image shifted by SHIFTS[i].

    Eqn 2 is linear in the query and the query linear in the head's features f, so the coefficients of recall i
    are [f, 1] P A_i: a rank-d_y linear map from features to coordinates. The best one in least squares is reduced-
    rank regression: the ridge solution W, restricted to the top d_y right-singular directions V of its fitted values
    (P = W V^T, A = V). Each query dimension is then scaled to unit RMS on `real` (its addressing row scaled back,
    so the recall is unchanged). Recall of a new image is then its nearest reconstruction the features allow,
    whatever its class; with `query_pixels` the head sees the image itself, and that is close to its projection on
    the bases."""
    head, config = memory.query_head, memory.config
    r, d = config.images_per_query, config.query_dim
    features = torch.cat([head.features(x.to(memory.bases.device, memory.bases.dtype)) for x in real.split(256)]).double()
    inputs = torch.cat([features, torch.ones_like(features[:, :1])], dim=1)  # the projection's bias is the last row
    real = real.to(bases.device)
    targets = torch.cat([small(torch.roll(real, shifts=(dy, dx), dims=(-2, -1))).flatten(1) @ bases.T
                         for dx, dy in (SHIFTS[i % len(SHIFTS)] for i in range(r))], dim=1).to(inputs.device)  # (N, r K)
    gram = inputs.T @ inputs
    gram = gram + ridge * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
    weight = torch.linalg.solve(gram, inputs.T @ targets)  # (F + 1, r K)
    _, _, vh = torch.linalg.svd(inputs @ weight, full_matrices=False)
    rank = min(d, vh.shape[0])
    directions = vh[:rank]  # (rank, r K)
    projection = weight @ directions.T  # (F + 1, rank)
    rms = (inputs @ projection).pow(2).mean(0).sqrt().clamp_min(1e-12)
    projection, directions = projection / rms, directions * rms[:, None]
    head.projection.weight.zero_()
    head.projection.bias.zero_()
    head.projection.weight[:rank] = projection[:-1].T.to(head.projection.weight.dtype)
    head.projection.bias[:rank] = projection[-1].to(head.projection.bias.dtype)
    addressing = torch.zeros(d, r * bases.shape[0], dtype=directions.dtype, device=directions.device)
    addressing[:rank] = directions
    return addressing.view(d, r, -1).transpose(0, 1)  # (r, d_y, K)


@torch.no_grad()
def standardize_queries(memory: AddressableMemory, real: torch.Tensor) -> None:
    """Rescale and shift the query head's projection so the queries of `real` images have mean 0 and std 1 in
    every dimension. A fresh encoder's pooled features share a large common part (after ReLU and pooling every
    image's features are positive): without this, every image queries nearly the same point and every class
    recalls nearly the same images, and the inner network has nothing to tell apart (5-way episodes stay at
    chance). The head stays a plain linear map: the query still depends on its own image alone."""
    head = memory.query_head
    features = torch.cat([head.features(x.to(memory.bases.device, memory.bases.dtype)) for x in real.split(256)])
    mean = features.mean(0)
    spread = ((features - mean) @ head.projection.weight.T).std(0).clamp_min(1e-8)
    head.projection.weight.div_(spread[:, None])
    head.projection.bias.copy_(-(head.projection.weight @ mean))
