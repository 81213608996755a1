"""RankUI entry point: `python app.py [--port 7860] [--data-dir ./data] ...` (see --help)."""

import logging

from rankui.app import build_app
from rankui.settings import Settings


def main(argv=None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    settings = Settings.from_args(argv)
    build_app(settings).launch(server_name=settings.host, server_port=settings.port)


if __name__ == "__main__":
    main()
