"""Epochscope's run directory: the one definition of what a training run writes and the
dashboard reads (docs/run-directory.md), and the public API to log your own training loop
(``epochscope.init``, docs/api.md). numpy and the standard library only at import; Pillow,
torch and the frameworks are imported by the functions that need them.
"""

from epochscope.api import RunLogger, init
from epochscope.gather import gather_logits
from epochscope.hierarchy import Taxonomy
from epochscope.layout import SCHEMA, SchemaError, check_run_name, epoch_file, epoch_of
from epochscope.lock import RunLockedError, lock_is_held
from epochscope.modelfile import ModelFile
from epochscope.provider import Runs
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
from epochscope.run import Run, RunCache, open_run
from epochscope.writer import NullWriter, RunWriter

__version__ = "0.1.0"

__all__ = [
    "SCHEMA",
    "DataInfo",
    "DeviceEvent",
    "EpochEvent",
    "ModelFile",
    "NullWriter",
    "Preprocess",
    "Run",
    "RunCache",
    "RunInfo",
    "RunLockedError",
    "RunLogger",
    "RunWriter",
    "Runs",
    "SchemaError",
    "StatusEvent",
    "StepEvent",
    "Taxonomy",
    "WarningEvent",
    "check_run_name",
    "epoch_file",
    "epoch_of",
    "gather_logits",
    "init",
    "lock_is_held",
    "open_run",
]
