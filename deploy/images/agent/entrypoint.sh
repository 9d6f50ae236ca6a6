#!/bin/sh
# Entrypoint of jiexu's agent image (/usr/local/bin/jiexu-entrypoint): runs `jiexu ARGS...` as the
# image's non-root user. Configuration comes only from JIEXU_* variables and mounted files; the one
# option the CLI takes on the command line only, the agency code, is filled in from JIEXU_AGENCY for
# the commands that need it (agent, doctor) when it is not given.
#
#   docker run IMAGE agent               JIEXU_AGENCY=110000 ... (the agent)
#   docker run IMAGE reconcile           the reconciliation agent
#   docker run IMAGE topology apply ...  any other jiexu command, as given
set -eu
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
