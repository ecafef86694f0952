#!/usr/bin/env bash
# Install the 天网 task bridge as systemd services on this host: a service user, the code in --dir
# with its own virtualenv (requirements/base.lock.txt), an environment file, one unit per Procfile line
# (deploy/systemd/render_units.py) and tianwang.target, enabled and started.
#
#   sudo deploy/systemd/install.sh [--user tianwang] [--dir /opt/tianwang]
#                                  [--env-file /etc/tianwang/tianwang.env] [--unit-dir /etc/systemd/system]
#                                  [--python /usr/bin/python3]
#   sudo deploy/systemd/install.sh --uninstall      # stops and removes the units (keeps code, user, settings)
#   deploy/systemd/install.sh --dry-run --unit-dir /tmp/units   # writes the units there, prints the rest
#
# Run it again after every `git pull`: it copies the new code, re-installs the requirements, rewrites
# the units and restarts the target (release migrates first; the others start after it).
set -euo pipefail

SOURCE=$(cd "$(dirname "$0")/../.." && pwd)
SERVICE_USER=tianwang
APP_DIR=/opt/tianwang
ENV_FILE=/etc/tianwang/tianwang.env
UNIT_DIR=/etc/systemd/system
# The system's Python by default: one under /root (pyenv) cannot be run by the service user.
PYTHON=$(command -v /usr/bin/python3 || command -v python3 || echo python3)
DRY_RUN=0
UNINSTALL=0

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --user) SERVICE_USER=${2:?--user needs a name}; shift 2 ;;
    --dir) APP_DIR=${2:?--dir needs a path}; shift 2 ;;
    --env-file) ENV_FILE=${2:?--env-file needs a path}; shift 2 ;;
    --unit-dir) UNIT_DIR=${2:?--unit-dir needs a path}; shift 2 ;;
    --python) PYTHON=${2:?--python needs a path}; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    -h|--help) usage ;;
    *) echo "unknown option: $1" >&2; usage 2 ;;
  esac
done

# In a dry run every step that changes the host is printed instead of run.
run() { if [ "$DRY_RUN" = 1 ]; then echo "+ $*"; else "$@"; fi; }
if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then echo "run as root (or with --dry-run)" >&2; exit 1; fi

if [ "$UNINSTALL" = 1 ]; then
  run systemctl disable --now tianwang.target || true
  for unit in "$UNIT_DIR"/tianwang-*.service "$UNIT_DIR"/tianwang.target; do
    [ -e "$unit" ] || continue
    run systemctl stop "$(basename "$unit")" || true
    run rm -f "$unit"
  done
  run systemctl daemon-reload
  echo "removed the units; kept $APP_DIR, $ENV_FILE and the user $SERVICE_USER (remove them by hand if wanted)"
  exit 0
fi

if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
  run useradd --system --user-group --home-dir "$APP_DIR" --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
fi
# The user's own group (`useradd --user-group` names it after the user; an existing user may differ).
SERVICE_GROUP=$(id -gn "$SERVICE_USER" 2>/dev/null || echo "$SERVICE_USER")
run mkdir -p "$APP_DIR"
if [ "$(cd "$APP_DIR" 2>/dev/null && pwd -P)" != "$(cd "$SOURCE" && pwd -P)" ]; then
  # The committed tree only: no .venv, var/, .env or caches of the clone this runs from.
  if [ "$DRY_RUN" = 1 ]; then echo "+ git -C $SOURCE archive HEAD | tar -x -C $APP_DIR";
  else git -C "$SOURCE" archive HEAD | tar -x -C "$APP_DIR"; fi
fi
run "$PYTHON" -m venv "$APP_DIR/.venv"
if [ "$DRY_RUN" = 0 ] && ! runuser -u "$SERVICE_USER" -- "$APP_DIR/.venv/bin/python" -c '' 2>/dev/null; then
  echo "$SERVICE_USER cannot run $APP_DIR/.venv/bin/python (made from $PYTHON, which it cannot reach):" \
       "rm -r $APP_DIR/.venv and pass --python with an interpreter outside /root" >&2
  exit 1
fi
# Exactly the locked versions (every distribution pinned), as the Docker image installs them.
run "$APP_DIR/.venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
  -r "$APP_DIR/requirements/base.lock.txt"
run "$APP_DIR/.venv/bin/pip" check --disable-pip-version-check   # the lock is complete for this Python
run install -d -o "$SERVICE_USER" -g "$SERVICE_GROUP" -m 0750 "$APP_DIR/var"

FIRST_SETUP=0
if [ ! -e "$ENV_FILE" ]; then
  FIRST_SETUP=1
  run install -D -m 0640 -o root -g "$SERVICE_GROUP" "$SOURCE/deploy/systemd/tianwang.env.example" "$ENV_FILE"
fi

[ "$DRY_RUN" = 1 ] && echo "+ writing the units into $UNIT_DIR"
[ "$DRY_RUN" = 1 ] && [ ! -e "$APP_DIR/Procfile" ] && RENDER_DIR=$SOURCE || RENDER_DIR=$APP_DIR
# In a dry run the code may not be in --dir yet: render from the source, with --dir's paths.
python3 "$SOURCE/deploy/systemd/render_units.py" --dir "$APP_DIR" --user "$SERVICE_USER" --group "$SERVICE_GROUP" \
  --env-file "$ENV_FILE" --out "$UNIT_DIR" --procfile "$RENDER_DIR/Procfile" >/dev/null
run systemctl daemon-reload
run systemctl enable tianwang.target
if [ "$FIRST_SETUP" = 1 ]; then
  echo "next: fill in $ENV_FILE, then: systemctl start tianwang.target"
else
  run systemctl restart tianwang.target
  echo "restarted: systemctl status 'tianwang-*'   journalctl -u 'tianwang-*' -f"
fi
