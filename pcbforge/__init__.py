"""pcbforge: clean, leakage-free, well-labelled PCB inspection datasets.

The import package has no side effects: nothing here touches the network, the
environment or global library state. Commands set their defaults on entry
(see :func:`pcbforge.env.apply_offline_defaults`).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
