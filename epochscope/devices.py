"""A background thread that samples the accelerators (or the CPU) into ``device`` events.

On CUDA: NVML (nvidia-ml-py) per visible GPU: memory used/total and utilisation. On CPU: this
process and its data-loader workers: resident memory and CPU use as a share of all cores.
Torch-free: torch is imported only to name CUDA devices, pynvml and psutil when sampling starts.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any

Emit = Callable[..., Any]  # (kind, epoch, **fields)


def device_names(device_type: str) -> list[dict[str, Any]]:
    """The ``devices`` list of run.json: what this node trains on."""
    if device_type == "cuda":
        import torch

        return [
            {"index": i, "kind": "cuda", "name": torch.cuda.get_device_name(i)}
            for i in range(torch.cuda.device_count())
        ]
    return [{"index": 0, "kind": "cpu", "name": _cpu_name()}]


def _cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    return f"cpu ({os.cpu_count()} cores)"


class _Nvml:
    def __init__(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        self.nv = pynvml
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        count = pynvml.nvmlDeviceGetCount()
        ids = [int(v) for v in visible.split(",") if v.strip().isdigit()] if visible else []
        self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in (ids or range(count))]

    def sample(self) -> list[dict[str, Any]]:
        out = []
        for i, h in enumerate(self.handles):
            mem = self.nv.nvmlDeviceGetMemoryInfo(h)
            util = self.nv.nvmlDeviceGetUtilizationRates(h)
            name = self.nv.nvmlDeviceGetName(h)
            out.append(
                {
                    "index": i,
                    "device_kind": "cuda",
                    "name": name.decode() if isinstance(name, bytes) else name,
                    "mem_used_mib": round(mem.used / 2**20, 1),
                    "mem_total_mib": round(mem.total / 2**20, 1),
                    "util_pct": float(util.gpu),
                }
            )
        return out


class _Cpu:
    def __init__(self) -> None:
        import psutil

        self.ps = psutil
        self.proc = psutil.Process()
        self.total_mib = psutil.virtual_memory().total / 2**20
        self.name = _cpu_name()
        self._seen: dict[int, Any] = {}
        self._tree()  # cpu_percent's first call per process only sets its baseline

    def _tree(self) -> list[Any]:
        procs = [self.proc]
        with contextlib.suppress(self.ps.Error):
            procs += self.proc.children(recursive=True)
        # keep the same Process objects between samples: cpu_percent measures since last call
        current = {}
        for p in procs:
            if p.pid not in self._seen:
                with contextlib.suppress(self.ps.Error):
                    p.cpu_percent(None)  # the first call only sets the baseline
            current[p.pid] = self._seen.get(p.pid, p)
        self._seen = current
        return list(current.values())

    def sample(self) -> list[dict[str, Any]]:
        cpu = rss = 0.0
        for p in self._tree():
            with contextlib.suppress(self.ps.Error):
                cpu += p.cpu_percent(None)
                rss += p.memory_info().rss
        return [
            {
                "index": 0,
                "device_kind": "cpu",
                "name": self.name,
                "mem_used_mib": round(rss / 2**20, 1),
                "mem_total_mib": round(self.total_mib, 1),
                "util_pct": round(min(100.0, cpu / (os.cpu_count() or 1)), 1),
            }
        ]


class DeviceMonitor(threading.Thread):
    """Emits one ``device`` event per device every ``interval`` seconds until stopped."""

    def __init__(self, emit: Emit, device_type: str, interval: float = 5.0) -> None:
        super().__init__(name="device-monitor", daemon=True)
        self.emit = emit
        self.interval = interval
        self.epoch = 1  # the trainer updates this as epochs begin
        self._stop_event = threading.Event()
        self._sampler: _Nvml | _Cpu | None = None
        try:
            self._sampler = _Nvml() if device_type == "cuda" else _Cpu()
        except Exception:  # no NVML library or no psutil: no device chart, training goes on
            if device_type == "cuda":
                with contextlib.suppress(Exception):
                    self._sampler = _Cpu()

    def run(self) -> None:
        if self._sampler is None:
            return
        # a first sample after a second, so the chart starts at once; then every interval
        wait = min(1.0, self.interval)
        while not self._stop_event.wait(wait):
            wait = self.interval
            try:
                for fields in self._sampler.sample():
                    self.emit("device", self.epoch, **fields)
            except Exception:
                return  # a monitoring failure must never take the run down

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=self.interval + 1)
