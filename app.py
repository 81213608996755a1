"""RankUI entry point: `python app.py [--port 7860] [--data-dir ./data] ...` (see --help)."""

import logging

from rankui.app import build_app, launch_kwargs
from rankui.settings import Settings


def main(argv=None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    settings = Settings.from_args(argv)
    build_app(settings).launch(**launch_kwargs(settings))


if __name__ == "__main__":
    main()
