"""The anatomical contrast's negatives at many classes: same values, memory bounded by chunks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from napari_action.training.losses import anatomical_contrast
from napari_action.training.negative_similarity import CHUNK_ELEMENTS, negative_similarity

pytestmark = pytest.mark.usefixtures("torch_seed")


def _largest_saved_for_backward(compute) -> int:
    """Elements of the largest tensor autograd keeps for the backward pass while ``compute()`` runs."""
    sizes = [0]

    def pack(tensor):
        sizes.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        compute()
    return max(sizes)


def test_the_contrast_of_forty_classes_keeps_no_gathered_negatives_of_every_class_for_backward():
    # The cpu preset's sampling (64 queries, 128 negatives, 128-dim embeddings) with 40 atlas regions
    # present, every pixel a hard query. All negatives at once: 40 x 64 x 128 x 128 = 42 M values
    # (168 MB, and 268 MB a class at the paper preset: 24 GB for 90 regions of a brain crop).
    classes, queries, negatives, dim = 40, 64, 128, 128
    rep = torch.randn(2, dim, 16, 16, requires_grad=True)
    labels = torch.arange(2 * 16 * 16).reshape(2, 16, 16) % classes
    probs = torch.full((2, classes, 16, 16), 1.0 / classes)

    def contrast():
        return anatomical_contrast(rep, labels, probs, num_queries=queries, num_negatives=negatives)

    largest = _largest_saved_for_backward(contrast)
    assert largest <= CHUNK_ELEMENTS < classes * queries * negatives * dim
    contrast().backward()
    assert rep.grad is not None and bool(rep.grad.abs().sum() > 0)


@pytest.mark.parametrize("chunk_elements", [1, 7 * 30, 10**9], ids=["one-row", "seven-rows", "one-chunk"])
def test_chunked_similarities_and_their_gradients_equal_the_direct_ones(chunk_elements):
    classes, queries, negatives, dim, pixels = 3, 6, 5, 4, 30
    features = F.normalize(torch.randn(pixels, dim, dtype=torch.float64), dim=1)
    chosen = torch.randint(0, pixels, (classes, queries))
    index = torch.randint(0, pixels, (classes, queries, negatives))
    direct_queries = features[chosen].clone().requires_grad_(True)
    chunked_queries = features[chosen].clone().requires_grad_(True)
    weights = torch.randn(classes, queries, negatives, dtype=torch.float64)

    direct = torch.einsum("mqd,mqnd->mqn", direct_queries, features[index])
    chunked = negative_similarity(chunked_queries, features, index, chunk_elements=chunk_elements)
    (direct * weights).sum().backward()
    (chunked * weights).sum().backward()

    torch.testing.assert_close(chunked, direct)
    torch.testing.assert_close(chunked_queries.grad, direct_queries.grad)
