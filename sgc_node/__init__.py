"""Composition root of sgc-node: the one settings object and the `sgc` command.

Everything else lives in the four rooms of the design card (scp/, worker/, sgc_core/, db/);
this package wires them together and is the only place that reads the environment.
"""

__version__ = "0.1.0"
