#!/bin/sh
# Entrypoint of jiexu's agent image (/usr/local/bin/jiexu-entrypoint): runs `jiexu ARGS...` as the
# image's non-root user. Configuration comes only from JIEXU_* variables and mounted files; the one
# option the CLI takes on the command line only, the agency code, is filled in from JIEXU_AGENCY for
# the commands that need it (agent, doctor) when it is not given.
#
#   docker run IMAGE agent               JIEXU_AGENCY=110000 ... (the agent)
#   docker run IMAGE reconcile           the reconciliation agent
#   docker run IMAGE topology apply ...  any other jiexu command, as given
#
# Secrets in variables: for every JIEXU_NAME_FILE naming a readable file, JIEXU_NAME is set to the
# file's content (trailing newline dropped) and JIEXU_NAME_FILE removed, e.g.
# JIEXU_DATABASE_URL_FILE=/run/secrets/jiexu/postgres-url: the URL with its password stays out of
# the compose file, the manifest and `docker inspect`.
set -eu
for name in $(env | sed -n 's/^\(JIEXU_[A-Z0-9_]*\)_FILE=.*/\1/p'); do
  eval "file=\${${name}_FILE}"
  if [ ! -f "$file" ] || [ ! -r "$file" ]; then
    echo "jiexu-entrypoint: ${name}_FILE=$file is not a readable file" >&2
    exit 64
  fi
  if eval "[ -n \"\${${name}:-}\" ]"; then
    echo "jiexu-entrypoint: set $name or ${name}_FILE, not both" >&2
    exit 64
  fi
  value="$(cat "$file")"
  export "$name=$value"
  unset "${name}_FILE"
done
if [ $# -eq 0 ]; then
  set -- --help
fi
case "$1" in
  agent | doctor)
    given=no
    for arg in "$@"; do
      case "$arg" in --agency | --agency=*) given=yes ;; esac
    done
    if [ "$given" = no ] && [ -n "${JIEXU_AGENCY:-}" ]; then
      cmd="$1"
      shift
      set -- "$cmd" --agency "$JIEXU_AGENCY" "$@"
    fi
    ;;
esac
exec /opt/jiexu/bin/jiexu "$@"
