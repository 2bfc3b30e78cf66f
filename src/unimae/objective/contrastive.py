"""Terms beyond the paper on the embedding state itself: a contrastive term and distillation from a prompt.

Both act on the state that is read at inference (``h_read``: the EOS state of the clean text in the
template the export records), so what is trained is what is embedded.

* **contrastive** (InfoNCE, as SimCSE / GEM): ``h_eos`` of the MAR-masked training input and a second
  view of the same text are positives; the other texts of the batch (gathered from every process) are
  the negatives. Symmetric: each side's anchors are scored against the other side's candidates.
* **distillation**: ``h_read`` is pulled toward a frozen teacher vector of the same text (the base
  model's best training-free embedding, computed once and cached), by cosine or mean squared error.

Every function here is a pure function of tensors; ``gather_with_grad`` is the only one that talks to
other processes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from unimae.objective.losses import TokenLoss


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(all processes' x concatenated in rank order, this process's offset in it)``; gradients flow
    back to each process's own rows. One process: ``(x, 0)``."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    from torch.distributed.nn.functional import all_gather

    sizes = [torch.zeros((), dtype=torch.long, device=x.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor(x.shape[0], device=x.device))
    if len({int(s) for s in sizes}) != 1:  # all_gather needs equal shapes; the loop's slices are equal
        raise ValueError(f"contrastive views of unequal size across processes: {[int(s) for s in sizes]}")
    parts = all_gather(x.contiguous())
    return torch.cat(parts, dim=0), dist.get_rank() * x.shape[0]


def info_nce(
    anchors: torch.Tensor, candidates: torch.Tensor, offset: int, temperature: torch.Tensor | float
) -> TokenLoss:
    """Summed InfoNCE of ``anchors`` ``(B, d)`` against ``candidates`` ``(N, d)`` where anchor i's
    positive is candidate ``offset + i`` and every other candidate is a negative (cosine / temperature).

    Returns a TokenLoss: ``sum`` of ``-log p(positive)`` over the B anchors, ``count`` B, ``correct`` the
    anchors whose most similar candidate is their positive.
    """
    a = F.normalize(anchors.float(), dim=-1)
    c = F.normalize(candidates.float(), dim=-1)
    logits = a @ c.T / temperature  # (B, N)
    target = torch.arange(a.shape[0], device=a.device) + offset
    loss = F.cross_entropy(logits, target, reduction="sum")
    correct = (logits.argmax(-1) == target).sum()
    return TokenLoss(loss, target.new_tensor(a.shape[0]), correct)


def symmetric_info_nce(
    view_a: torch.Tensor, view_b: torch.Tensor, temperature: torch.Tensor | float
) -> TokenLoss:
    """InfoNCE both ways between two views ``(B, d)`` of the same B texts (row i of each is one text),
    negatives gathered across processes. ``sum`` adds both directions; ``count`` is 2B, so ``sum /
    count`` is the mean over both directions."""
    all_a, offset = gather_with_grad(view_a)
    all_b, _ = gather_with_grad(view_b)
    ab = info_nce(view_a, all_b, offset, temperature)
    ba = info_nce(view_b, all_a, offset, temperature)
    return TokenLoss(ab.sum + ba.sum, ab.count + ba.count, ab.correct + ba.correct)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str = "cosine") -> TokenLoss:
    """Summed distance of ``student`` ``(B, d)`` to fixed ``teacher`` vectors ``(B, d)``.

    kind: ``cosine`` (``1 - cos``, scale-free) or ``mse`` (squared error of the L2-normalised vectors,
    ``= 2 - 2 cos``, averaged over dimensions). ``correct`` counts rows with cosine above 0.9.
    """
    s, t = F.normalize(student.float(), dim=-1), F.normalize(teacher.float().detach(), dim=-1)
    cos = (s * t).sum(-1)  # (B,)
    per_row = 1 - cos if kind == "cosine" else (s - t).pow(2).mean(-1)
    if kind not in ("cosine", "mse"):
        raise ValueError(f"distill loss must be 'cosine' or 'mse', got {kind!r}")
    return TokenLoss(per_row.sum(), cos.new_tensor(cos.shape[0], dtype=torch.long), (cos > 0.9).sum())
