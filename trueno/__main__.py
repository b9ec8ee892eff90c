import sys

from trueno.cli.main import main

sys.exit(main())
