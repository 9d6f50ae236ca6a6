#!/usr/bin/env bash
# Build jiexu's agent image without any container registry: debootstrap a Debian root filesystem
# with python3, install into a virtualenv jiexu's dependencies exactly as requirements.lock pins
# them (every wheel's sha256 checked: `pip install --require-hashes`; fetched from the index by pip
# on the building machine, or taken from JIEXU_WHEELS_DIR for a machine without one), then a wheel
# of jiexu built from this checkout (`--no-deps`), `docker import` it, then add the non-root user
# and the health check with a local `docker build` (FROM the imported image: nothing is pulled).
#
# usage: deploy/images/agent/build.sh [IMAGE_TAG]      (default jiexu/agent:offline)
# env:   DEBIAN_MIRROR, DEBIAN_SUITE   as for deploy/images/rabbitmq/build.sh (same mirror choice)
#        JIEXU_WHEELS_DIR  a directory holding the locked dependencies' wheels (and, if it has one,
#                          jiexu's); unset: `pip download` fetches them by the lock's hashes
#        PIP               the pip to fetch and build wheels with (default: python3 -m pip)
#        JIEXU_REBUILD_IMAGE=1  rebuild even when an image built from the same inputs is present
#
# The image: ENTRYPOINT jiexu (entrypoint.sh), user jiexu (10001), configuration by JIEXU_* and
# mounted files only, HEALTHCHECK on /readyz (healthcheck.py). README "Deploying", docs/operations.md.
# The lock: deploy/images/agent/lock.sh regenerates it (tests/unit/test_agent_lock.py says when).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
suite="${DEBIAN_SUITE:-bookworm}"
tag="${1:-jiexu/agent:offline}"
pip=(${PIP:-python3 -m pip})

# What goes into the image: this directory, the package's sources, the Debian suite.
sources() {
  (cd "$root" && find pyproject.toml README.md agents broker schemas -type f \
    ! -path '*/__pycache__/*' ! -name '*.pyc' | LC_ALL=C sort | xargs sha256sum)
}
lock="$here/requirements.lock"
inputs="$( { cat "$here/build.sh" "$here/entrypoint.sh" "$here/healthcheck.py" "$here/Dockerfile" "$lock"; \
  sources; echo "$suite"; } | sha256sum | cut -c1-16)"
if [ -z "${JIEXU_REBUILD_IMAGE:-}" ]; then
  present="$(docker image inspect -f '{{index .Config.Labels "org.jiexu.image-inputs"}}' "$tag" 2>/dev/null || true)"
  if [ "$present" = "$inputs" ]; then
    echo "image $tag already built from these inputs ($inputs); JIEXU_REBUILD_IMAGE=1 rebuilds it"
    exit 0
  fi
fi

mirror="$("$root/deploy/images/rabbitmq/build.sh" --print-mirror)"
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
command -v docker >/dev/null || { echo "docker is missing: apt-get install docker.io" >&2; exit 1; }

started=$(date +%s)
work="$(mktemp -d /tmp/jiexu-agent-image.XXXXXX)"
rootfs="$work/rootfs"
base="jiexu/agent-rootfs:$inputs"
cleanup() {
  rm -rf "$work"
  docker image rm "$base" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# 1. Wheels: the dependencies exactly as the lock pins them, for the image's Python and this
#    machine's architecture (pip checks every file against the lock's sha256 and refuses anything
#    unpinned or unhashed); jiexu's own from a clean copy of the sources (the checkout gets no
#    build/ or egg-info).
mkdir -p "$work/src" "$work/wheels" "$work/jiexu"
(cd "$root" && tar -c --exclude=__pycache__ --exclude='*.pyc' pyproject.toml README.md agents broker schemas) \
  | tar -x -C "$work/src"
python_version="$(sed -n 's/^# python: \([0-9.]*\);.*/\1/p' "$lock")"
arch="$(uname -m)"
case "$arch" in arm64) arch=aarch64 ;; esac
platforms=()
for minor in $(seq 36 -1 17); do platforms+=("--platform=manylinux_2_${minor}_${arch}"); done
platforms+=("--platform=manylinux2014_${arch}" "--platform=linux_${arch}")
[ "$arch" = x86_64 ] && platforms+=("--platform=manylinux2010_${arch}" "--platform=manylinux1_${arch}")
if [ -n "${JIEXU_WHEELS_DIR:-}" ]; then
  from=(--no-index --find-links "$JIEXU_WHEELS_DIR")
  cp "$JIEXU_WHEELS_DIR"/jiexu-*.whl "$work/jiexu/" 2>/dev/null || true
else
  from=()
fi
"${pip[@]}" download --quiet --require-hashes --only-binary=:all: --python-version "$python_version" \
  --implementation cp --abi "cp${python_version/./}" --abi abi3 --abi none "${platforms[@]}" \
  "${from[@]}" -r "$lock" -d "$work/wheels"
if ! ls "$work/jiexu"/jiexu-*.whl >/dev/null 2>&1; then
  "${pip[@]}" wheel --quiet --no-deps -w "$work/jiexu" "$work/src"
fi
rm -rf "$work/src"
echo "wheels: $(ls "$work/wheels" | wc -l) locked + jiexu ($(( $(date +%s) - started )) s)"

# 2. Root filesystem: Debian's python3 and nothing else of note.
echo "debootstrap $suite from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv "$suite" "$rootfs" "$mirror" >/dev/null
echo "debootstrap done ($(( $(date +%s) - started )) s)"

# 3. /opt/jiexu from the wheels alone (no index): the locked dependencies with their hashes
#    checked again (a wheel changed since the download, or one the lock does not name, stops the
#    build), then jiexu without dependencies, `pip check` (the lock satisfies jiexu's
#    requirements), then the pip machinery removed.
cp -r "$work/wheels" "$rootfs/tmp/wheels"
cp -r "$work/jiexu" "$rootfs/tmp/jiexu"
cp "$lock" "$rootfs/tmp/requirements.lock"
chroot "$rootfs" python3 -m venv /opt/jiexu
chroot "$rootfs" /opt/jiexu/bin/pip install --quiet --no-index --no-cache-dir --require-hashes \
  --only-binary=:all: --find-links /tmp/wheels -r /tmp/requirements.lock
chroot "$rootfs" sh -c '/opt/jiexu/bin/pip install --quiet --no-index --no-cache-dir --no-deps /tmp/jiexu/jiexu-*.whl'
chroot "$rootfs" /opt/jiexu/bin/pip check
chroot "$rootfs" /opt/jiexu/bin/jiexu --help >/dev/null
chroot "$rootfs" /opt/jiexu/bin/pip uninstall --quiet --yes pip
rm -rf "$rootfs/tmp/wheels" "$rootfs/tmp/jiexu" "$rootfs/tmp/requirements.lock"
install -m 0755 "$here/entrypoint.sh" "$rootfs/usr/local/bin/jiexu-entrypoint"
install -m 0755 "$here/healthcheck.py" "$rootfs/usr/local/bin/jiexu-healthcheck"

# 4. The user and its directories: data 0700 (stores hold personal data), secrets mounted later.
chroot "$rootfs" groupadd --system --gid 10001 jiexu
chroot "$rootfs" useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/jiexu \
  --shell /usr/sbin/nologin jiexu
install -d -m 0700 -o 10001 -g 10001 "$rootfs/var/lib/jiexu" "$rootfs/var/lib/jiexu/data" \
  "$rootfs/run/secrets/jiexu"
install -d -m 0755 "$rootfs/etc/jiexu"

# Smaller: no package caches, lists, documentation, translations (the byte code of /opt/jiexu stays: faster starts).
rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"* \
  "$rootfs/usr/share/doc/"* "$rootfs/usr/share/man/"* "$rootfs/usr/share/info/"* \
  "$rootfs/usr/share/locale/"* "$rootfs/var/log/"*.log "$rootfs/var/log/apt/"* \
  "$rootfs/usr/share/python-wheels/"*

tar -C "$rootfs" -c . | docker import - "$base" >/dev/null
DOCKER_BUILDKIT=0 docker build --quiet --build-arg "BASE=$base" \
  --label "org.jiexu.image-inputs=$inputs" -t "$tag" -f "$here/Dockerfile" "$here" >/dev/null
size="$(docker image inspect -f '{{.Size}}' "$tag")"
echo "built $tag ($((size / 1000000)) MB, inputs $inputs) in $(($(date +%s) - started)) s"
