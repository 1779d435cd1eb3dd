#!/usr/bin/env bash
# start-smtp.sh — install aiosmtpd (PyPI) into a cached virtualenv for the notification tests, which start their
# own SMTP sink per test (`python -m aiosmtpd -n -l 127.0.0.1:PORT -c aiosmtpd.handlers.Mailbox DIR`: every
# message lands in a Maildir the test reads).
#
# Usage:
#   start-smtp.sh [install]   install if needed; print `export SMTP_SINK_PYTHON=…/bin/python`
#
# Settings (environment):
#   SMTP_VENV         virtualenv          (default ~/.cache/steward-tests/smtp-venv)
#   AIOSMTPD_VERSION  aiosmtpd version    (default 1.4.6)
#   PYTHON            interpreter         (default python3)
set -euo pipefail

SMTP_VENV=${SMTP_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/steward-tests/smtp-venv}
AIOSMTPD_VERSION=${AIOSMTPD_VERSION:-1.4.6}
PYTHON=${PYTHON:-python3}

log() { echo "[start-smtp] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

case ${1:-install} in
  install)
    installed=""
    [ -x "$SMTP_VENV/bin/python" ] && installed=$("$SMTP_VENV/bin/pip" show aiosmtpd 2>/dev/null || true)
    if ! grep -qx "Version: $AIOSMTPD_VERSION" <<< "$installed"; then
      log "installing aiosmtpd $AIOSMTPD_VERSION into $SMTP_VENV"
      [ -x "$SMTP_VENV/bin/pip" ] || "$PYTHON" -m venv "$SMTP_VENV"
      timeout 600 "$SMTP_VENV/bin/pip" install --disable-pip-version-check -q "aiosmtpd==$AIOSMTPD_VERSION" >&2 \
        || die "pip install aiosmtpd==$AIOSMTPD_VERSION failed"
    fi
    echo "export SMTP_SINK_PYTHON=$SMTP_VENV/bin/python"
    ;;
  *) die "usage: start-smtp.sh [install]" ;;
esac
