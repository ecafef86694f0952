"""`python -m workers.listener`: the Procfile's listener line."""
import signal

from app import create_app
from app.infra.logs import setup_logging
from workers.listener import Listener


def main() -> None:
    setup_logging("listener")
    app = create_app()
    listener = Listener(app.config["SETTINGS"])
    signal.signal(signal.SIGTERM, listener.stop)
    signal.signal(signal.SIGINT, listener.stop)
    listener.run()


if __name__ == "__main__":
    main()
