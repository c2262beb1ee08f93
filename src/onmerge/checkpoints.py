"""HF checkpoint folders read without loading them: which safetensors files hold the weights, names and shapes.

Both the task vector (optimizers) and the offline merges (mergekit) need this, and both must read exactly the files
that transformers and mergekit load: the shards a `model.safetensors.index.json` lists, else `model.safetensors`
(never, say, an `adapter_model.safetensors` lying beside them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open


def weight_files(folder: Path, role: str = "model") -> list[Path]:
    """The safetensors files holding a checkpoint's weights; `role` names the folder in error messages."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{role} model folder {folder} does not exist")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted({folder / shard for shard in _weight_map(index, role).values()})
        for shard in shards:
            if not shard.is_file():
                raise ValueError(f"{role} model folder {folder} lacks the shard {shard.name} its index lists")
        return shards
    if (folder / "model.safetensors").is_file():
        return [folder / "model.safetensors"]
    raise ValueError(f"{role} model folder {folder} has no model.safetensors or model.safetensors.index.json")


def _weight_map(index: Path, role: str) -> dict[str, str]:
    """A sharded checkpoint's index (parameter name -> shard file); ValueError naming it when it does not parse."""
    try:
        weight_map = json.loads(index.read_bytes().decode("utf-8"))["weight_map"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{role} model index {index} does not parse ({type(error).__name__}: {error})") from None
    if not isinstance(weight_map, dict) or not all(isinstance(shard, str) for shard in weight_map.values()):
        raise ValueError(f"{role} model index {index}: weight_map is not a map of parameter names to file names")
    return weight_map


def parameter_locations(folder: Path, role: str = "model") -> dict[str, tuple[Path, torch.Size]]:
    """Parameter name -> (file holding it, shape), from the safetensors headers only.

    A file whose header does not parse (cut short, a length past its end, not UTF-8 JSON, offsets that do not cover
    the data) fails here naming it: safetensors' own message does not say which file, and transformers or mergekit
    would fail later, after loading the others.
    """
    locations = {}
    for shard in weight_files(folder, role):
        try:
            with safe_open(shard, framework="pt") as handle:
                for name in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
                    locations[name] = (shard, torch.Size(handle.get_slice(name).get_shape()))
        except SafetensorError as error:
            raise ValueError(f"{role} model file {shard}: the safetensors header does not parse ({error})") from None
    return locations


def check_model_folder(folder: Path, tokenizer: Any, role: str = "model") -> None:
    """Before a model is loaded to train: every weight file's header parses, and the tokenizer (its own, loaded) can
    emit no id past the embedding's rows, which would otherwise be an index error inside the first forward pass (a
    device-side assert on a GPU). ValueError names the folder, and both numbers."""
    from transformers import AutoConfig  # here: the optimizers import this module, and need no transformers

    parameter_locations(folder, role)
    rows = AutoConfig.from_pretrained(folder).get_text_config().vocab_size
    highest = max(tokenizer.get_vocab().values())
    if highest >= rows:
        raise ValueError(
            f"{role} model folder {folder}: the tokenizer's ids reach {highest}, but the embedding has {rows} rows "
            f"(vocab_size in config.json): ids {rows}..{highest} have none"
        )


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
        if local.is_dir():  # a folder without weights, or whose weights or tokenizer are broken, fails here
            from transformers import AutoTokenizer

            check_model_folder(local, AutoTokenizer.from_pretrained(local), "source")
            for item in local.iterdir():
                (staging / item.name).symlink_to(item.resolve())
        else:
            from huggingface_hub import snapshot_download

            try:
                snapshot_download(repo_id=source, local_dir=staging)
            except Exception as error:  # offline, unknown repo, gated model: all mean "no such model here"
                raise ValueError(f"model {source!r} is neither a local folder nor downloadable: {error}") from error
    return Path(out)
