"""HF checkpoint folders read without loading them: which safetensors files hold the weights, names and shapes.

Both the task vector (optimizers) and the offline merges (mergekit) need this, and both must read exactly the files
that transformers and mergekit load: the shards a `model.safetensors.index.json` lists, else `model.safetensors`
(never, say, an `adapter_model.safetensors` lying beside them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open


def weight_files(folder: Path, role: str = "model") -> list[Path]:
    """The safetensors files holding a checkpoint's weights; `role` names the folder in error messages."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{role} model folder {folder} does not exist")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted({folder / shard for shard in json.loads(index.read_text())["weight_map"].values()})
        for shard in shards:
            if not shard.is_file():
                raise ValueError(f"{role} model folder {folder} lacks the shard {shard.name} its index lists")
        return shards
    if (folder / "model.safetensors").is_file():
        return [folder / "model.safetensors"]
    raise ValueError(f"{role} model folder {folder} has no model.safetensors or model.safetensors.index.json")


def parameter_locations(folder: Path, role: str = "model") -> dict[str, tuple[Path, torch.Size]]:
    """Parameter name -> (file holding it, shape), from the safetensors headers only."""
    locations = {}
    for shard in weight_files(folder, role):
        with safe_open(shard, framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
                locations[name] = (shard, torch.Size(handle.get_slice(name).get_shape()))
    return locations


def check_same_parameters(shapes_by_role: Mapping[str, Mapping[str, tuple[int, ...]]]) -> None:
    """Every model must hold the same parameter names with the same shapes; name the first that does not."""
    (first_role, first), *others = shapes_by_role.items()
    for role, shapes in others:
        for name in sorted(first.keys() | shapes.keys()):
            if name not in shapes:
                raise ValueError(f"parameter {name!r} is in the {first_role} model but not in the {role} model")
            if name not in first:
                raise ValueError(f"parameter {name!r} is in the {role} model but not in the {first_role} model")
            if tuple(first[name]) != tuple(shapes[name]):
                raise ValueError(
                    f"parameter {name!r} has shape {tuple(first[name])} in the {first_role} model "
                    f"but {tuple(shapes[name])} in the {role} model"
                )


def fetch_model(source: str, out: Path) -> Path:
    """A paper backbone's checkpoint at `out`: a local folder's files linked (not copied), else a hub download.

    The folder appears whole or not at all; a source that is neither a folder nor reachable on the hub fails
    naming it.
    """
    from onmerge.atomic import atomic_dir

    local = Path(source).expanduser()
    with atomic_dir(Path(out)) as staging:
        if local.is_dir():
            weight_files(local, "source")  # a folder without weights fails here, not in training
            for item in local.iterdir():
                (staging / item.name).symlink_to(item.resolve())
        else:
            from huggingface_hub import snapshot_download

            try:
                snapshot_download(repo_id=source, local_dir=staging)
            except Exception as error:  # offline, unknown repo, gated model: all mean "no such model here"
                raise ValueError(f"model {source!r} is neither a local folder nor downloadable: {error}") from error
    return Path(out)
