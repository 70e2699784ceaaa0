"""Classes scored by several prompts (the merged background's words; synonyms): max over the group.

Shared by the MaskCLIP engine and the MaskCLIP+ network, whose classifier holds the same rows.
"""

from __future__ import annotations

import torch


def reduce_groups(per_prompt: torch.Tensor, groups: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(B, R, h, w) scores of R prompts -> (B, n_classes, h, w): each class takes the max over its
    prompts (``groups[r]`` is prompt r's class). Used for the merged background class."""
    if len(groups) == n_classes:
        return per_prompt
    out = per_prompt.new_full((per_prompt.shape[0], n_classes, *per_prompt.shape[2:]), -torch.inf)
    index = groups.to(per_prompt.device)[None, :, None, None].expand_as(per_prompt)
    return out.scatter_reduce(1, index, per_prompt, "amax")
