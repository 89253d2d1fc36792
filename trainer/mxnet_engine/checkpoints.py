"""MXNet checkpoints without pickle: ``epoch-NNNN.params`` (Gluon's parameter file, MXNet's own
array format), ``epoch-NNNN.states.npz`` (the optimizer's state arrays) and ``epoch-NNNN.json``
(epoch, settings, best epoch), written in that order through the run writer (atomic, with the
fault hooks). The JSON is written last: an epoch's checkpoint exists once its JSON does.

``gluon.Trainer.save_states``/``load_states`` pickle the whole optimizer; instead the state is
saved as plain arrays: per parameter index its state array (SGD: the momentum buffer; none
without momentum), the update counts per device and ``num_update``, and the learning-rate
schedule's position (its numeric attributes, e.g. ``base_lr`` and ``count`` of a
FactorScheduler). Loading builds NDArrays from ``np.load(..., allow_pickle=False)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from mxnet import gluon, nd

from epochscope.layout import CHECKPOINTS, epoch_file, epoch_of
from epochscope.writer import RunWriter

SUFFIXES = (".json", ".states.npz", ".params")  # the marker first (see session.open)


def save(writer: RunWriter, epoch: int, meta: dict[str, Any], *, net, trainer) -> None:
    name = f"{CHECKPOINTS}/{epoch_file(epoch, '')}"
    writer.write_file(name + ".params", lambda path: net.save_parameters(str(path)))
    writer.write_npz(name + ".states.npz", **optimizer_arrays(trainer))
    writer.write_json(name + ".json", {"engine": "mxnet", **meta})


def load(marker: Path) -> dict[str, Any]:
    """The checkpoint whose JSON is ``marker``: its metadata, the parameter file's path (checked
    to load) and the optimizer's arrays. Raises when a file is missing, torn or foreign."""
    meta = json.loads(marker.read_text())
    if not isinstance(meta, dict) or meta.get("epoch") != epoch_of(marker):
        raise ValueError(f"{marker.name} is not a checkpoint of its epoch")
    params = marker.with_name(epoch_file(meta["epoch"], ".params"))
    nd.load(str(params))  # MXNet's array format: a torn file raises, nothing is unpickled
    states_file = marker.with_name(epoch_file(meta["epoch"], ".states.npz"))
    with np.load(states_file, allow_pickle=False) as z:
        states = {k: z[k] for k in z.files}
    return {**meta, "params_file": str(params), "states": states}


def _updaters(trainer: gluon.Trainer) -> list:
    # Gluon keeps the optimizer's state in one Updater per device, or in the kvstore's when the
    # kvstore updates (several devices); both are created lazily, as load_states does here
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    return [trainer._kvstore._updater] if trainer._update_on_kvstore else trainer._updaters


def optimizer_arrays(trainer: gluon.Trainer) -> dict[str, np.ndarray]:
    """The optimizer's whole state as named numeric arrays."""
    updater = _updaters(trainer)[0]
    opt = trainer._optimizer
    out = {
        "num_update": np.int64(opt.num_update),
        "begin_num_update": np.int64(opt.begin_num_update),
    }
    for device, counts in opt._all_index_update_counts.items():
        out[f"count.{device}"] = np.array(sorted(counts.items()), np.int64).reshape(-1, 2)
    for key, value in (vars(opt.lr_scheduler) if opt.lr_scheduler else {}).items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[f"schedule.{key}"] = np.float64(value)
    for index, state in updater.states.items():
        if isinstance(state, nd.NDArray):
            out[f"state.{index}"] = state.asnumpy()
        elif state is not None:  # multi-precision or other optimizers' tuples
            raise TypeError(f"cannot save optimizer state of type {type(state).__name__}")
    return out


def restore_optimizer(trainer: gluon.Trainer, arrays: dict[str, np.ndarray]) -> None:
    """Put :func:`optimizer_arrays`' state back into ``trainer`` (before its first step)."""
    updaters = _updaters(trainer)
    opt = trainer._optimizer
    opt.num_update = int(arrays["num_update"])
    opt.begin_num_update = int(arrays["begin_num_update"])
    counts = {
        int(key.split(".")[1]): {int(i): int(c) for i, c in value}
        for key, value in arrays.items()
        if key.startswith("count.")
    }
    opt._all_index_update_counts = counts or {0: {}}
    opt._index_update_count = next(iter(opt._all_index_update_counts.values()))
    for key, value in arrays.items():
        name = key.removeprefix("schedule.")
        if name != key and hasattr(opt.lr_scheduler, name):
            setattr(opt.lr_scheduler, name, type(getattr(opt.lr_scheduler, name))(value.item()))
    states = {int(k.split(".")[1]): v for k, v in arrays.items() if k.startswith("state.")}
    for updater in updaters:
        # on the CPU; each updater moves its copy to its device before the first update
        updater.states = {i: nd.array(v, dtype=v.dtype) for i, v in states.items()}
        updater.states_synced = dict.fromkeys(updater.states, False)
