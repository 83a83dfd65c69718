"""Layer-wise fine-tuning of the encoder (12.5.2 (2), figure 11): when each block is released.

The book freezes the pretrained encoder, releases its convolution blocks one
after another, and fixes the number of blocks worth fine-tuning by the
segmentation quality measured after each release. ``--unfreeze E1,E2,...``
names the epochs after which one more block (from the top) is released; the
training loop runs one phase per depth, and the epoch with the best
validation Dice fixes the depth.
"""
from __future__ import annotations

from common.errors import UserError


def parse_unfreeze(text: str, epochs: int, blocks: int, parser=None) -> list[int]:
    """``--unfreeze`` as the epochs after which one more block is released (0: before training).

    ``parser`` (an argparse parser) turns a bad value into its usage error; without one it is a ``UserError``.
    """
    text = text.strip().lower()
    if text == "none":
        return []
    if text == "all":
        return [0] * blocks
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = None
    problem = None
    if not values:
        problem = f"--unfreeze must be 'all', 'none' or epochs like 5,10,15, not {text!r}"
    elif len(values) > blocks:
        problem = f"--unfreeze names {len(values)} releases but the encoder has {blocks} blocks"
    elif any(b < a for a, b in zip(values, values[1:], strict=False)) or values[0] < 0:
        problem = f"--unfreeze epochs must be ascending and not negative: {text}"
    if problem:
        if parser is not None:
            parser.error(problem)
        raise UserError(problem)
    return values


def depth_at(epoch: int, release_after: list[int]) -> int:
    """Released encoder blocks during (1-based) ``epoch``."""
    return sum(1 for after in release_after if after < epoch)


def phases(epochs: int, release_after: list[int]) -> list[tuple[int, int, int]]:
    """(depth, first epoch, last epoch) runs of equal depth: each is one uninterrupted stretch of training."""
    result: list[tuple[int, int, int]] = []
    for epoch in range(1, epochs + 1):
        depth = depth_at(epoch, release_after)
        if result and result[-1][0] == depth:
            result[-1] = (depth, result[-1][1], epoch)
        else:
            result.append((depth, epoch, epoch))
    return result
