"""The bottom of the import graph: what every room of the node shares.

Why a package of its own: the SCP, the workers and the CLI must agree on settings, the broker,
logging and the task and queue names, yet ``scp/`` and ``worker/`` may not import each other
nor the composition root (``sgc_node``). This package imports none of them
(``tests/test_import_rules.py`` keeps it so).
"""
