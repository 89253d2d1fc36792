"""Epochscope's run directory: the one definition of what a training run writes and the
dashboard reads (docs/run-directory.md). numpy and the standard library only; image
preprocessing imports Pillow when first used.
"""

from epochscope.layout import SCHEMA, SchemaError, check_run_name, epoch_file, epoch_of
from epochscope.lock import RunLockedError, lock_is_held
from epochscope.records import (
    DataInfo,
    DeviceEvent,
    EpochEvent,
    Preprocess,
    RunInfo,
    StatusEvent,
    StepEvent,
    WarningEvent,
)
from epochscope.writer import NullWriter, RunWriter

__all__ = [
    "SCHEMA",
    "DataInfo",
    "DeviceEvent",
    "EpochEvent",
    "NullWriter",
    "Preprocess",
    "RunInfo",
    "RunLockedError",
    "RunWriter",
    "SchemaError",
    "StatusEvent",
    "StepEvent",
    "WarningEvent",
    "check_run_name",
    "epoch_file",
    "epoch_of",
    "lock_is_held",
]
