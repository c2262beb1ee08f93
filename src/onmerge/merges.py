"""The offline merges, each declared once: its name (a path segment and a table row), its hyper-parameters in path
order, and the mergekit method and settings that compute it (`onmerge.merging`).

Read by the grid (paths, the preset check), the workflow's wildcard, the CLI's choices, the tables and figures, and
the merging step. Light: Snakemake imports it while parsing the workflow.

mergekit settings, chosen deliberately (they are mergekit 0.1.5's defaults, which the paper used as far as we know):

* linear: `normalize: true`. The weights (w, 1 - w) sum to one, so normalising only divides by one.
* TIES: `normalize: true`. Each entry's merged delta is the weighted mean over the models whose delta survived
  trimming and sign election, so where only the RLHF delta survives it is applied at full strength, not times w.
* DARE (`dare_linear`): `normalize: false`, `rescale: true`. Without sign election normalising would divide by
  w + (1 - w) = 1 anyway; `rescale` scales the kept entries to the dense delta's L1 norm (not DARE's 1/p).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class OfflineMerge:
    """An offline merge of the RLHF model with its SFT model. One with a `density` merges task vectors over the
    pre-trained base; one without averages the whole models."""

    name: str
    params: tuple[str, ...]  # in path order: `density~0.3_weight~0.5`
    mergekit_method: str
    mergekit_parameters: Mapping[str, bool] = field(default_factory=dict)

    @property
    def over_base(self) -> bool:
        """Whether it merges task vectors over the base model (and so sparsifies them to a density)."""
        return "density" in self.params


MERGES: Mapping[str, OfflineMerge] = MappingProxyType(
    {
        merge.name: merge
        for merge in (
            OfflineMerge("linear", ("weight",), "linear", {"normalize": True}),
            OfflineMerge("dare", ("density", "weight"), "dare_linear", {"normalize": False, "rescale": True}),
            OfflineMerge("ties", ("density", "weight"), "ties", {"normalize": True}),
        )
    }
)


def get(name: str) -> OfflineMerge:
    """The merge called `name`; an unknown name is an error that lists the known ones."""
    if name not in MERGES:
        raise ValueError(f"unknown offline merge {name!r} (one of {', '.join(MERGES)})")
    return MERGES[name]
