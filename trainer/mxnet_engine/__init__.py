"""The MXNet engine: the seed's own framework as a second trainer writing the same run directory.

MXNet 1.9.1 (its last release) imports only with numpy 1.23, so the engine lives in its own
environment, ``.venv-mxnet`` (``make install-mxnet``), and its own process:
``python -m trainer train --engine mxnet ...`` re-executes ``.venv-mxnet/bin/python -m
trainer.mxnet_engine ...`` (see :mod:`trainer.mxnet_engine.launch`).

Nothing in this package imports torch. ``launch`` and ``data`` import no MXNet
either, so the main environment can use them (the dispatch, and the tests' parity checks).
"""

VENV_DIR = ".venv-mxnet"
