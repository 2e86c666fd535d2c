"""`python -m sgc_node` is the `sgc` command."""

from sgc_node.cli import main

if __name__ == "__main__":  # not when multiprocessing's spawn re-imports it (scp processes)
    main()
