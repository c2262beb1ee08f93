"""Online merging optimizers (OnDARE, OnTIES), their baselines, and the task vector they merge with."""

from onmerge.optim.adamw import LegacyAdamW
from onmerge.optim.baselines import ChildTuningAdamW, EMAAdamW
from onmerge.optim.online import OnDAREAdamW, OnTIESAdamW
from onmerge.optim.task_vector import TaskVector, canonical_name, task_vector

__all__ = [
    "ChildTuningAdamW",
    "EMAAdamW",
    "LegacyAdamW",
    "OnDAREAdamW",
    "OnTIESAdamW",
    "TaskVector",
    "canonical_name",
    "task_vector",
]
