#!/bin/bash
# Entrypoint of jiexu's offline RabbitMQ image (installed as /usr/local/sbin/jiexu-rabbitmq-entrypoint).
#
# Runs as root, prepares what must differ per container, then drops to the rabbitmq user and execs
# the server (which becomes the container's main process). Nothing secret is baked into the image:
#
# - the administrator, created at the node's first start (empty database) from
#   RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS (/ RABBITMQ_DEFAULT_VHOST, default "/"), or the
#   same names with _FILE naming a mounted secret file. Required at first start; "guest" is refused
#   (RabbitMQ lets guest in from loopback only, and this image never opens it). No guest user is
#   created. Or, instead of the variables, a mounted /etc/rabbitmq/advanced.config naming
#   default_user and default_pass. The password is handed to the node in a 0400 file owned by rabbitmq, never on a
#   command line, and the variables are removed from the server's environment.
# - the Erlang cookie: RABBITMQ_ERLANG_COOKIE or RABBITMQ_ERLANG_COOKIE_FILE (a cluster needs one
#   cookie shared by its nodes); otherwise the one kept from an earlier start of this container;
#   otherwise 256 random bits generated now. /var/lib/rabbitmq/.erlang.cookie, 0400, rabbitmq.
# - Erlang distribution (epmd 4369, node 25672) bound to 127.0.0.1 and the node named
#   rabbit@localhost, unless JIEXU_RABBITMQ_CLUSTER=true (then a given cookie is required and the
#   distribution listens on all interfaces: firewall it to the cluster's nodes).
# - TLS: when /etc/rabbitmq/tls/{ca_certificate,server_certificate,server_key}.pem are mounted,
#   AMQPS on 5671, management HTTPS on 15671, Prometheus HTTPS on 15691 (TLS 1.2/1.3, client
#   certificates verified against the CA when presented; JIEXU_RABBITMQ_TLS_CLIENT_CERT=required to
#   demand one). Plain AMQP 5672 and HTTP 15672/15692 are then off unless
#   JIEXU_RABBITMQ_PLAINTEXT=true; without certificates they are on.
#
# Any other command than rabbitmq-server (e.g. `docker run -it IMAGE bash`) is run as given.
set -euo pipefail

prog=jiexu-rabbitmq
die() { echo "$prog: $*" >&2; exit 64; }
note() { echo "$prog: $*" >&2; }

if [ "${1:-rabbitmq-server}" != "rabbitmq-server" ]; then
  exec "$@"
fi
[ $# -gt 0 ] && shift
[ "$(id -u)" = 0 ] || die "start the container as root (the default): the entrypoint drops to the rabbitmq user itself"

data=/var/lib/rabbitmq
runtime=/run/jiexu-rabbitmq
conf_d=/etc/rabbitmq/conf.d
first_start_config="$data/jiexu-first-start.config"

# truthy NAME DEFAULT: whether the variable NAME (or DEFAULT when unset) says true.
truthy() {
  local value="${!1:-$2}"
  case "${value,,}" in
    1 | true | yes | on) return 0 ;;
    0 | false | no | off) return 1 ;;
    *) die "$1 is true or false, not '$value'" ;;
  esac
}

# secret NAME: the value of $NAME, or of the file named by ${NAME}_FILE (one trailing newline
# dropped); never both. Prints nothing when neither is set.
secret() {
  local name="$1" file_var="${1}_FILE"
  local value="${!name:-}" file="${!file_var:-}"
  if [ -n "$value" ] && [ -n "$file" ]; then
    die "set $name or ${name}_FILE, not both"
  fi
  if [ -n "$file" ]; then
    if ! [ -f "$file" ] || ! [ -r "$file" ]; then die "${name}_FILE=$file is not a readable file"; fi
    value="$(cat -- "$file")"
    [ -n "$value" ] || die "${name}_FILE=$file is empty"
  fi
  printf '%s' "$value"
}

# erlang_binary TEXT: TEXT as an Erlang binary of its bytes (<<104,105>>), so no character of a
# password needs quoting in the config file.
erlang_binary() {
  local bytes
  bytes="$(printf '%s' "$1" | od -An -v -tu1 | tr -s ' \n' ',' | sed 's/^,//; s/,$//')"
  printf '<<%s>>' "$bytes"
}

# write_private PATH: stdin into PATH, 0400, owned by rabbitmq (replacing whatever was there).
write_private() {
  local tmp
  tmp="$(mktemp "$1.XXXXXX")"
  cat >"$tmp"
  chown rabbitmq:rabbitmq "$tmp"
  chmod 0400 "$tmp"
  mv -f "$tmp" "$1"
}

# -- read every variable first, then remove them from the environment the server inherits --------
admin_user="$(secret RABBITMQ_DEFAULT_USER)"
admin_pass="$(secret RABBITMQ_DEFAULT_PASS)"
admin_vhost="$(secret RABBITMQ_DEFAULT_VHOST)"
given_cookie="$(secret RABBITMQ_ERLANG_COOKIE)"
cluster=false
truthy JIEXU_RABBITMQ_CLUSTER false && cluster=true
unset RABBITMQ_DEFAULT_USER RABBITMQ_DEFAULT_USER_FILE RABBITMQ_DEFAULT_PASS RABBITMQ_DEFAULT_PASS_FILE \
  RABBITMQ_DEFAULT_VHOST RABBITMQ_DEFAULT_VHOST_FILE RABBITMQ_ERLANG_COOKIE RABBITMQ_ERLANG_COOKIE_FILE

# -- node name and the Erlang distribution -----------------------------------------------------
mkdir -p "$conf_d" "$runtime"
if $cluster; then
  [ -n "$given_cookie" ] || die "JIEXU_RABBITMQ_CLUSTER=true needs the cluster's shared cookie: \
set RABBITMQ_ERLANG_COOKIE_FILE (a mounted secret) or RABBITMQ_ERLANG_COOKIE"
  nodename="${RABBITMQ_NODENAME:-rabbit@$(hostname)}"
  note "clustering: Erlang distribution on all interfaces (epmd 4369, node ${RABBITMQ_DIST_PORT:-25672}); restrict them to the cluster's nodes"
else
  # Loopback only: epmd and the node's distribution port listen on 127.0.0.1, and the node is
  # rabbit@localhost so that rabbitmqctl inside the container reaches it there.
  node_prefix="${RABBITMQ_NODENAME:-rabbit}"
  nodename="${node_prefix%%@*}@localhost"
  export ERL_EPMD_ADDRESS=127.0.0.1
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="${RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS:-} -kernel inet_dist_use_interface {127,0,0,1}"
fi
export RABBITMQ_NODENAME="$nodename"
# rabbitmqctl run later with `docker exec` reads the node name from here.
printf '# written by %s at container start\nNODENAME=%s\n' "$prog" "$nodename" >/etc/rabbitmq/rabbitmq-env.conf
chmod 0644 /etc/rabbitmq/rabbitmq-env.conf

# -- the Erlang cookie ---------------------------------------------------------------------------
cookie="$data/.erlang.cookie"
if [ -n "$given_cookie" ]; then
  case "$given_cookie" in
    *[!A-Za-z0-9_.@-]*) die "the Erlang cookie may hold only letters, digits and _ . @ -" ;;
  esac
  [ ${#given_cookie} -ge 20 ] || die "the Erlang cookie is too short (at least 20 characters)"
  printf '%s' "$given_cookie" | write_private "$cookie"
elif [ -s "$cookie" ]; then
  chown rabbitmq:rabbitmq "$cookie"
  chmod 0400 "$cookie"
else
  head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' | write_private "$cookie"
fi
unset given_cookie

# -- the administrator, at the first start only ----------------------------------------------------
if compgen -G "$data/mnesia/$nodename/*" >/dev/null; then
  rm -f "$first_start_config"
  if [ -n "$admin_user" ]; then
    note "the node's database exists: RABBITMQ_DEFAULT_USER is used only at the first start (change users with rabbitmqctl)"
  fi
elif [ -n "${RABBITMQ_ADVANCED_CONFIG_FILE:-}" ] || [ -e /etc/rabbitmq/advanced.config ]; then
  # The operator's own advanced.config names the administrator (default_user, default_pass).
  advanced="${RABBITMQ_ADVANCED_CONFIG_FILE:-/etc/rabbitmq/advanced.config}"
  [ -z "$admin_user" ] || die "an advanced.config is mounted ($advanced): put default_user and \
default_pass in it instead of RABBITMQ_DEFAULT_USER, or drop it"
  grep -q default_user "$advanced" || die "the mounted $advanced names no default_user: \
set one there, or drop it and use RABBITMQ_DEFAULT_USER and RABBITMQ_DEFAULT_PASS"
  rm -f "$first_start_config"
  note "first start: the administrator is the default_user of $advanced"
else
  [ -n "$admin_user" ] || die "no administrator: set RABBITMQ_DEFAULT_USER and RABBITMQ_DEFAULT_PASS, \
or RABBITMQ_DEFAULT_USER_FILE and RABBITMQ_DEFAULT_PASS_FILE naming mounted secret files"
  [ "$admin_user" != guest ] || die "RABBITMQ_DEFAULT_USER=guest is refused: RabbitMQ admits guest from \
loopback only and this image does not open it; choose another name"
  [ -n "$admin_pass" ] || die "RABBITMQ_DEFAULT_PASS (or RABBITMQ_DEFAULT_PASS_FILE) is required with RABBITMQ_DEFAULT_USER"
  {
    echo "%% written by $prog for the first start; removed at the next start"
    echo "[{rabbit, ["
    echo "  {default_user, $(erlang_binary "$admin_user")},"
    echo "  {default_pass, $(erlang_binary "$admin_pass")},"
    echo "  {default_vhost, $(erlang_binary "${admin_vhost:-/}")},"
    echo "  {default_user_tags, [administrator]},"
    echo "  {default_permissions, [<<\".*\">>, <<\".*\">>, <<\".*\">>]}"
    echo "]}]."
  } | write_private "$first_start_config"
  export RABBITMQ_ADVANCED_CONFIG_FILE="$first_start_config"
  note "first start: administrator '$admin_user' on vhost '${admin_vhost:-/}'"
fi
unset admin_pass

# -- listeners: TLS when certificates are mounted, plaintext for tests ---------------------------
tls_src=/etc/rabbitmq/tls
tls_dir="$runtime/tls"
tls_files=(ca_certificate.pem server_certificate.pem server_key.pem)
present=0
for f in "${tls_files[@]}"; do [ -e "$tls_src/$f" ] && present=$((present + 1)); done
tls=false
if [ "$present" = 3 ]; then
  tls=true
elif [ "$present" != 0 ]; then
  die "TLS needs all of ${tls_files[*]} in $tls_src; found $present of 3"
fi
plaintext_default=true
$tls && plaintext_default=false
plaintext=false
truthy JIEXU_RABBITMQ_PLAINTEXT "$plaintext_default" && plaintext=true
$tls || $plaintext || die "JIEXU_RABBITMQ_PLAINTEXT=false without certificates in $tls_src leaves no listener"

runtime_conf="$conf_d/50-jiexu-listeners.conf"
{
  echo "# written by $prog at container start"
  if $plaintext; then
    echo "listeners.tcp.default = 5672"
    echo "management.tcp.port = 15672"
    echo "prometheus.tcp.port = 15692"
  else
    echo "listeners.tcp = none"
  fi
  if $tls; then
    rm -rf "$tls_dir"
    install -d -m 0700 -o rabbitmq -g rabbitmq "$tls_dir"
    for f in "${tls_files[@]}"; do
      if ! [ -f "$tls_src/$f" ] || ! [ -r "$tls_src/$f" ]; then die "$tls_src/$f is not a readable file"; fi
      install -m 0400 -o rabbitmq -g rabbitmq "$tls_src/$f" "$tls_dir/$f"
    done
    case "${JIEXU_RABBITMQ_TLS_CLIENT_CERT:-optional}" in
      optional) require_client=false ;;
      required) require_client=true ;;
      *) die "JIEXU_RABBITMQ_TLS_CLIENT_CERT is optional or required, not '${JIEXU_RABBITMQ_TLS_CLIENT_CERT}'" ;;
    esac
    for prefix in ssl_options management.ssl prometheus.ssl; do
      echo "$prefix.cacertfile = $tls_dir/ca_certificate.pem"
      echo "$prefix.certfile = $tls_dir/server_certificate.pem"
      echo "$prefix.keyfile = $tls_dir/server_key.pem"
      echo "$prefix.verify = verify_peer"
      echo "$prefix.fail_if_no_peer_cert = $require_client"
      echo "$prefix.versions.1 = tlsv1.3"
      echo "$prefix.versions.2 = tlsv1.2"
    done
    echo "listeners.ssl.default = 5671"
    echo "management.ssl.port = 15671"
    echo "prometheus.ssl.port = 15691"
  fi
} >"$runtime_conf"
chmod 0644 "$runtime_conf"
note "listeners: plaintext (5672, 15672, 15692) $($plaintext && echo on || echo off), TLS (5671, 15671, 15691) $($tls && echo on || echo off)"

install -d -o rabbitmq -g rabbitmq "$data" /var/log/rabbitmq
export HOME="$data"
cd "$data"
exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server "$@"
