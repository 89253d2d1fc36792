"""The device sampler lives in epochscope.devices (torch-free, shared with epochscope.init);
kept here so the trainer's imports stay as they were."""

from epochscope.devices import DeviceMonitor, device_names

__all__ = ["DeviceMonitor", "device_names"]
