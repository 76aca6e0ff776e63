"""The anatomical contrast's query–negative similarities, without every negative's embedding at once.

Each present class draws ``Q`` queries and ``N`` negatives per query (:func:`anatomical_contrast
<napari_action.training.losses.anatomical_contrast>`). Gathering every negative's embedding made an
``(M, Q, N, D)`` tensor that autograd kept until the backward pass: 4 MB per class at the cpu
preset, 268 MB per class at the paper preset (Q 256, N 512, D 512), so the 90 atlas regions in a
batch of axial brain crops asked for 24 GB. Here each query's similarity to every embedded pixel of the
batch is one matrix product, and the negatives' columns are picked from it. The batch has ``P``
such pixels, far fewer than ``N·D`` (1,024 against 16,384 at the cpu preset, 32,768 against
262,144 at the paper preset); rows of queries go a chunk at a time, so that at most
:data:`CHUNK_ELEMENTS` similarities exist at once, forward and backward. The product is also
faster on a CPU than gathering the embeddings was.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["CHUNK_ELEMENTS", "negative_similarity"]

#: Query–pixel similarities held at once: 32 MiB in float32.
CHUNK_ELEMENTS = 2**23


def negative_similarity(
    queries: Tensor, features: Tensor, negatives: Tensor, *, chunk_elements: int = CHUNK_ELEMENTS
) -> Tensor:
    """Dot products of each query with its negatives' embeddings, gradient into the queries only.

    Parameters
    ----------
    queries : Tensor
        ``(M, Q, D)`` query embeddings (they carry the gradient).
    features : Tensor
        ``(P, D)`` every pixel's embedding; detached here (negatives pass no gradient).
    negatives : Tensor
        ``(M, Q, N)`` indices into ``features``.
    chunk_elements : int
        At most this many query–pixel similarities (rows × P) at a time; at least one row.

    Returns
    -------
    Tensor
        ``(M, Q, N)``.
    """
    m, q, dim = queries.shape
    rows = queries.reshape(m * q, dim)
    flat_negatives = negatives.reshape(m * q, negatives.shape[-1])
    pixels_t = features.detach().T
    step = max(1, chunk_elements // max(1, pixels_t.shape[1]))
    # Autograd keeps neither product: the gather's backward needs only the indices.
    parts = [
        (rows[start : start + step] @ pixels_t).gather(1, flat_negatives[start : start + step])
        for start in range(0, m * q, step)
    ]
    return torch.cat(parts).reshape(negatives.shape)
