#!/usr/bin/env bash
# Build a hardened RabbitMQ image (management and Prometheus plugins) without any container
# registry, from Debian's packages: debootstrap a root filesystem, configure it, `docker import` it.
# For agencies on isolated networks (医保专网) and for CI, where `docker pull` cannot work.
#
# usage: deploy/images/rabbitmq/build.sh [IMAGE_TAG]      (default jiexu/rabbitmq:offline)
#        deploy/images/rabbitmq/build.sh --print-mirror   (the mirror it would use, then exit)
# env:   DEBIAN_MIRROR  the Debian mirror to install from; when unset, the first apt source of the
#                       machine for the suite (/etc/apt/sources.list.d/*.sources, *.list, then
#                       /etc/apt/sources.list). There is no built-in default: with neither, it stops.
#        DEBIAN_SUITE   default bookworm
#        JIEXU_REBUILD_IMAGE=1  rebuild even when an image built from the same inputs is present
#
# What the image does at start (administrator, Erlang cookie, distribution, TLS) is described in
# entrypoint.sh and in the README's section "A broker image without a registry".
set -euo pipefail

suite="${DEBIAN_SUITE:-bookworm}"
here="$(cd "$(dirname "$0")" && pwd)"
apt_etc="${JIEXU_APT_ETC:-/etc/apt}" # where the apt sources are read (tests point it elsewhere)

# The first URI of an enabled deb822 stanza (Types: deb) whose Suites include $suite.
mirror_from_deb822() {
  awk -v suite="$suite" '
    function flush() {
      if (uri != "" && index(" " types " ", " deb ") && index(" " suites " ", " " suite " ") \
          && tolower(enabled) != "no") { print uri; done = 1; exit }
      types = ""; suites = ""; uri = ""; enabled = ""
    }
    FNR == 1 { flush() }
    /^[ \t]*#/ { next }
    /^[ \t]*$/ { flush(); next }
    tolower($1) == "types:" { $1 = ""; types = $0; gsub(/[ \t]+/, " ", types) }
    tolower($1) == "suites:" { $1 = ""; suites = $0; gsub(/[ \t]+/, " ", suites) }
    tolower($1) == "uris:" { uri = $2 }
    tolower($1) == "enabled:" { enabled = $2 }
    END { if (!done) flush() }
  ' "$@"
}

# The URI of the first one-line "deb [options] URI SUITE ..." for $suite.
mirror_from_one_line() {
  awk -v suite="$suite" '
    $1 == "deb" {
      i = 2
      if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
      if ($(i + 1) == suite) { print $i; exit }
    }
  ' "$@"
}

find_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then
    echo "$DEBIAN_MIRROR"
    return
  fi
  local found="" files=()
  shopt -s nullglob
  files=("$apt_etc"/sources.list.d/*.sources)
  [ ${#files[@]} -gt 0 ] && found="$(mirror_from_deb822 "${files[@]}")"
  files=("$apt_etc"/sources.list.d/*.list)
  [ -z "$found" ] && [ ${#files[@]} -gt 0 ] && found="$(mirror_from_one_line "${files[@]}")"
  [ -z "$found" ] && [ -f "$apt_etc/sources.list" ] && found="$(mirror_from_one_line "$apt_etc/sources.list")"
  shopt -u nullglob
  if [ -z "$found" ]; then
    cat >&2 <<EOF
no Debian mirror to build from: DEBIAN_MIRROR is not set, and no apt source for suite '$suite' is
configured in $apt_etc/sources.list.d/*.sources, $apt_etc/sources.list.d/*.list or $apt_etc/sources.list.
Set DEBIAN_MIRROR to the Debian mirror this machine may use (e.g. your network's internal mirror),
or configure apt with one; this script has no default mirror.
EOF
    return 1
  fi
  echo "$found"
}

if [ "${1:-}" = "--print-mirror" ]; then
  find_mirror
  exit
fi

tag="${1:-jiexu/rabbitmq:offline}"
# The image is rebuilt whenever what goes into it changes.
inputs="$(cat "$here/build.sh" "$here/entrypoint.sh" "$here/rabbitmq.conf" <(echo "$suite") | sha256sum | cut -c1-16)"
if [ -z "${JIEXU_REBUILD_IMAGE:-}" ]; then
  present="$(docker image inspect -f '{{index .Config.Labels "org.jiexu.image-inputs"}}' "$tag" 2>/dev/null || true)"
  if [ "$present" = "$inputs" ]; then
    echo "image $tag already built from these inputs ($inputs); JIEXU_REBUILD_IMAGE=1 rebuilds it"
    exit 0
  fi
fi

mirror="$(find_mirror)"
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
command -v docker >/dev/null || { echo "docker is missing: apt-get install docker.io" >&2; exit 1; }

started=$(date +%s)
rootfs="$(mktemp -d /tmp/jiexu-rabbit-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

echo "debootstrap $suite from $mirror into $rootfs"
debootstrap --variant=minbase --include=rabbitmq-server "$suite" "$rootfs" "$mirror" >/dev/null

install -m 0644 "$here/rabbitmq.conf" "$rootfs/etc/rabbitmq/rabbitmq.conf"
install -d -m 0755 "$rootfs/etc/rabbitmq/conf.d"
printf '[rabbitmq_management,rabbitmq_prometheus].\n' >"$rootfs/etc/rabbitmq/enabled_plugins"
install -m 0755 "$here/entrypoint.sh" "$rootfs/usr/local/sbin/jiexu-rabbitmq-entrypoint"

# Nothing of one container may be in every container: no Erlang cookie (each container makes its
# own at start), no node database, no logs of the build.
find "$rootfs" -xdev -name .erlang.cookie -delete
rm -rf "$rootfs/var/lib/rabbitmq/mnesia/"* "$rootfs/var/log/rabbitmq/"*
rm -f "$rootfs/etc/rabbitmq/rabbitmq-env.conf" "$rootfs/etc/rabbitmq/advanced.config"
if [ -n "$(find "$rootfs" -xdev -name .erlang.cookie)" ]; then
  echo "an Erlang cookie is still in the root filesystem; refusing to build" >&2
  exit 1
fi
# Smaller: no package caches, lists, documentation or translations.
rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"* \
  "$rootfs/usr/share/doc/"* "$rootfs/usr/share/man/"* "$rootfs/usr/share/info/"* \
  "$rootfs/usr/share/locale/"* "$rootfs/var/log/"*.log "$rootfs/var/log/apt/"*

tar -C "$rootfs" -c . | docker import \
  -c 'ENTRYPOINT ["/usr/local/sbin/jiexu-rabbitmq-entrypoint"]' \
  -c 'CMD ["rabbitmq-server"]' \
  -c 'EXPOSE 5671 5672 15671 15672 15691 15692' \
  -c 'ENV LANG=C.UTF-8' \
  -c "LABEL org.jiexu.image-inputs=$inputs" \
  - "$tag" >/dev/null
size="$(docker image inspect -f '{{.Size}}' "$tag")"
echo "built $tag ($((size / 1000000)) MB, inputs $inputs) in $(($(date +%s) - started)) s"
