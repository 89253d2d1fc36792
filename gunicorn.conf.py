# gunicorn reads ./gunicorn.conf.py by default: `gunicorn dashboard.app:server` started from the
# repository gets the same worker class and start-up check as the Procfile's
# `-c python:dashboard.gunicorn_conf`.
from dashboard.gunicorn_conf import on_starting, when_ready, worker_class  # noqa: F401
