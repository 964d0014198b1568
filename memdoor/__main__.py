"""`python -m memdoor`: the same entry point as the installed `memdoor` script."""

from memdoor.cli.main import entry_point

if __name__ == "__main__":
    entry_point()
