"""Devices: the profiles as data, and everything derived from a profile.

    from vilt_edge.devices import get_profile, resolve_target, detect_host
    orin = get_profile("jetson-orin-nano"); print(orin.peak_int8_tops, orin.memory_bandwidth_gbs)
    target = resolve_target("cpu")  # this host's CPU profile, as the stages read it

- `profiles`: one TOML file per device (`profiles/*.toml`, plus $VILT_EDGE_DEVICES folders);
- `host`: this machine's description and the profile it matches;
- `target`: a `--target` name resolved once (`Target`): INT8 preset, runtime, model file,
  session settings;
- `roofline`: a graph's cost and a device's latency floor.
Adding a device is adding a file.
"""

from vilt_edge.devices.host import (
    amx_tiles_granted,
    describe_machine,
    detect_host,
    host_cpu_flags,
    machine_description,
    usable_cpu_flags,
)
from vilt_edge.devices.profiles import (
    PRECISIONS,
    PROFILE_DIR,
    DeviceProfile,
    get_profile,
    load_profiles,
)
from vilt_edge.devices.target import Target, resolve_target, target_names

__all__ = [
    "PRECISIONS",
    "PROFILE_DIR",
    "DeviceProfile",
    "amx_tiles_granted",
    "Target",
    "describe_machine",
    "detect_host",
    "get_profile",
    "host_cpu_flags",
    "load_profiles",
    "machine_description",
    "resolve_target",
    "target_names",
    "usable_cpu_flags",
]
