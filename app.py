"""Start the chat app and JSON API: `python app.py [--host H] [--port P] [--auth-file PATH] [--index DIR]`.

The same as `rag serve` (every option of it works here): it binds 127.0.0.1:7860 by default and
builds the bundled demo index on first start when no index exists.
"""

import sys

from rag.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
