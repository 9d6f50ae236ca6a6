#!/usr/bin/env bash
# Build the compose region's PostgreSQL image without a registry: debootstrap Debian's
# postgresql-15, `docker import` (same mirror choice as deploy/images/rabbitmq/build.sh).
# usage: deploy/compose/postgres/build.sh [TAG]   (default jiexu/postgres:offline)
# An image built from the same inputs is kept; JIEXU_REBUILD_IMAGE=1 rebuilds it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
suite="${DEBIAN_SUITE:-bookworm}"
tag="${1:-jiexu/postgres:offline}"
inputs="$(cat "$here/build.sh" "$here/entrypoint.sh" <(echo "$suite") | sha256sum | cut -c1-16)"
if [ -z "${JIEXU_REBUILD_IMAGE:-}" ]; then
  present="$(docker image inspect -f '{{index .Config.Labels "org.jiexu.image-inputs"}}' "$tag" 2>/dev/null || true)"
  if [ "$present" = "$inputs" ]; then
    echo "image $tag already built from these inputs ($inputs); JIEXU_REBUILD_IMAGE=1 rebuilds it"
    exit 0
  fi
fi
mirror="$("$root/deploy/images/rabbitmq/build.sh" --print-mirror)"
started=$(date +%s)
rootfs="$(mktemp -d /tmp/jiexu-postgres-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap $suite (postgresql-15) from $mirror"
debootstrap --variant=minbase --include=postgresql-15 "$suite" "$rootfs" "$mirror" >/dev/null
rm -rf "$rootfs/var/lib/postgresql/15" "$rootfs/etc/postgresql/15"
install -m 0755 "$here/entrypoint.sh" "$rootfs/usr/local/sbin/jiexu-postgres-entrypoint"
rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"* \
  "$rootfs/usr/share/doc/"* "$rootfs/usr/share/man/"* "$rootfs/usr/share/info/"* \
  "$rootfs/usr/share/locale/"* "$rootfs/var/log/"*.log "$rootfs/var/log/apt/"*
tar -C "$rootfs" -c . | docker import \
  -c 'ENTRYPOINT ["/usr/local/sbin/jiexu-postgres-entrypoint"]' -c 'CMD ["postgres"]' \
  -c 'ENV LANG=C.UTF-8 PGDATA=/var/lib/postgresql/data' -c 'EXPOSE 5432' \
  -c 'VOLUME ["/var/lib/postgresql/data"]' \
  -c "LABEL org.jiexu.image-inputs=$inputs" - "$tag" >/dev/null
size="$(docker image inspect -f '{{.Size}}' "$tag")"
echo "built $tag ($((size / 1000000)) MB, inputs $inputs) in $(($(date +%s) - started)) s"
