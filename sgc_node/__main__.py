"""`python -m sgc_node` is the `sgc` command."""

from sgc_node.cli import main

main()
