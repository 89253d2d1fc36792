"""``python -m trainer <command>``: one entry point, one module per command.

Each command module has ``main(argv: list[str]) -> int``; modules are imported only when their
command runs, so ``make-demo-data`` and ``--help`` start fast and never import torch.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("trainer.train", "train a ResNet on an image-folder dataset into a run directory"),
    "stop": ("trainer.background", "stop a background trainer cleanly (status 'stopped')"),
    "predict": ("trainer.predict", "print the top-5 labels of images with a run's model"),
    "make-demo-data": ("trainer.demo_data", "write the synthetic, WordNet-shaped demo dataset"),
    "prepare-data": ("trainer.prepare_data", "pre-resize a dataset into a store train reads"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m trainer <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {about}" for name, (_, about) in COMMANDS.items()]
    lines += ["", "python -m trainer <command> --help explains a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    if name == "train":
        # --engine mxnet re-executes in .venv-mxnet; the PyTorch engine never sees --engine
        from trainer.mxnet_engine.launch import engine_of, exec_engine, strip_engine

        engine = engine_of(rest)
        if engine == "mxnet":
            return exec_engine(rest)
        if engine not in (None, "pytorch"):
            print(f"error: unknown --engine {engine!r}; choose pytorch or mxnet", file=sys.stderr)
            return 2
        rest = strip_engine(rest)
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)
