#!/usr/bin/env bash
# Build a RabbitMQ image with the management plugin without any container registry, from Debian's
# packages: debootstrap a root filesystem, configure it, and `docker import` it.
# For agencies on isolated networks (医保专网) and for CI, where `docker pull` cannot work.
#
# usage: deploy/images/rabbitmq/build.sh [IMAGE_TAG]    (default jiexu/rabbitmq:offline)
# env:   DEBIAN_MIRROR (default: the first URI in /etc/apt/sources.list.d/debian.sources),
#        DEBIAN_SUITE (default bookworm)
set -euo pipefail

tag="${1:-jiexu/rabbitmq:offline}"
suite="${DEBIAN_SUITE:-bookworm}"
here="$(cd "$(dirname "$0")" && pwd)"

if docker image inspect "$tag" >/dev/null 2>&1 && [ -z "${JIEXU_REBUILD_IMAGE:-}" ]; then
  echo "image $tag already present (set JIEXU_REBUILD_IMAGE=1 to rebuild)"
  exit 0
fi

mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
  mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror="$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }

rootfs="$(mktemp -d /tmp/jiexu-rabbit-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

echo "debootstrap $suite from $mirror into $rootfs"
debootstrap --variant=minbase --include=rabbitmq-server "$suite" "$rootfs" "$mirror" >/dev/null

install -m 0644 "$here/rabbitmq.conf" "$rootfs/etc/rabbitmq/rabbitmq.conf"
printf '[rabbitmq_management,rabbitmq_prometheus].\n' > "$rootfs/etc/rabbitmq/enabled_plugins"
# The Debian package runs the node as user rabbitmq from its home; nothing else needs changing.
rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*

tar -C "$rootfs" -c . | docker import \
  -c 'CMD ["rabbitmq-server"]' \
  -c 'EXPOSE 5672 15672 15692' \
  -c 'ENV LANG=C.UTF-8' \
  - "$tag"
echo "built $tag"
