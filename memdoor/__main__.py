import sys

from memdoor.cli.main import main

sys.exit(main(sys.argv[1:]))
