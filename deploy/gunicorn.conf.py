"""gunicorn settings of the web process (`gunicorn -c deploy/gunicorn.conf.py wsgi:app`, the Procfile's
web line). Everything comes from the environment, so honcho, systemd and Docker run the same line.

The access log stays on (status, duration and client of every request are what the app's own log
does not say) but goes through the app's masking, like every other log line: a phone or ID number in
a path, a query or a header never reaches the log in clear.
"""
import os

from gunicorn.glogging import Logger

from app.infra.logs import mask

bind = f"{os.environ.get('WEB_HOST') or '0.0.0.0'}:{os.environ.get('PORT') or '8000'}"
workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS") or 4)
graceful_timeout = 30
# No control socket (gunicorn >= 25 opens one at ~/.gunicorn/gunicorn.ctl by default): every web process
# on a host would contend for that one path, the filesystem is read-only under systemd and Docker, and
# supervisors manage the process by signals.
control_socket_disable = True
accesslog = "-"
# Behind nginx (deploy/nginx) REMOTE_ADDR is the real client: the app's ProxyFix rewrites it from
# X-Forwarded-For (TRUSTED_PROXIES), and the access line is written from the same environ.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'


class MaskedAccessLogger(Logger):
    """gunicorn's logger with every request-derived field masked by app.logs.mask."""

    def atoms(self, resp, req, environ, request_time):
        found = super().atoms(resp, req, environ, request_time)
        return {key: mask(value) if isinstance(value, str) else value for key, value in found.items()}


logger_class = MaskedAccessLogger
