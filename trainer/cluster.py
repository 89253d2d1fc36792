"""Several machines: notice when a multi-node job came up as a world of one process.

Under SLURM the allocation says how many nodes were asked for; under torchrun an elastic
``--nnodes MIN:MAX`` can start with fewer agents than wanted, and a trainer started by hand on
each machine without torchrun trains alone on each. A world of 1 then trains a separate model
on every node while the user thinks it is one job, so the trainer says so at start-up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping


def nodes_requested(env: Mapping[str, str]) -> int:
    """How many machines the job's environment asked for (1 when it says nothing)."""
    for key in ("EPOCHSCOPE_NNODES", "SLURM_JOB_NUM_NODES", "SLURM_NNODES", "PET_NNODES"):
        value = env.get(key, "")
        # torchrun's PET_NNODES may be a range "MIN:MAX": what was wanted is MAX
        value = value.rsplit(":", 1)[-1].strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def alone_warning(world_size: int, env: Mapping[str, str]) -> str | None:
    """The warning for several nodes asked for but a world of one process, else None."""
    asked = nodes_requested(env)
    if asked <= 1 or world_size > 1:
        return None
    return (
        f"warning: {asked} nodes were asked for but this trainer is a world of 1 process: it "
        "trains alone, and every other node would train its own copy. Start it under torchrun "
        "on every node (torchrun --nnodes N --nproc-per-node G --rdzv-backend c10d "
        "--rdzv-endpoint HOST:PORT -m trainer train ...), or under srun with one task per GPU."
    )


def warn_if_alone(world_size: int, env: Mapping[str, str], say: Callable[[str], None]) -> None:
    message = alone_warning(world_size, env)
    if message:
        say(message)
