"""Guards the public names of DESIGN: removing or renaming one is a breaking change."""

from __future__ import annotations

import bus

FIXED = {
    "Bus",
    "Service",
    "Context",
    "Retry",
    "DeadLetter",
    "BusError",
    "RequestTimeout",
    "RemoteError",
    "Reject",
    "DecodeError",
    "MessageTooLarge",
    "ConfigError",
}


def test_fixed_names_are_exported() -> None:
    assert FIXED <= set(bus.__all__)
    for name in bus.__all__:
        assert hasattr(bus, name), name


def test_every_error_derives_from_bus_error() -> None:
    for name in bus.__all__:
        obj = getattr(bus, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, bus.BusError), name


def test_bus_does_not_import_adapters_or_drivers() -> None:
    import subprocess
    import sys

    code = (
        "import sys, bus; bad = [m for m in sys.modules if m.split('.')[0] in "
        "('adapters', 'aio_pika', 'aiokafka')]; print(bad); sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
