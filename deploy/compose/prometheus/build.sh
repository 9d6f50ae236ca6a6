#!/usr/bin/env bash
# The region's Prometheus image without a registry: Debian's prometheus binary (the installed
# package's, else `apt-get download prometheus`) on the agent image's Debian root filesystem
# (FROM jiexu/agent:offline, local: nothing is pulled). Build the agent image first.
# usage: deploy/compose/prometheus/build.sh [TAG] [AGENT_IMAGE]
#        (defaults jiexu/prometheus:offline, jiexu/agent:offline)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tag="${1:-jiexu/prometheus:offline}"
base="${2:-jiexu/agent:offline}"
work="$(mktemp -d /tmp/jiexu-prometheus-image.XXXXXX)"
trap 'rm -rf "$work"' EXIT
if [ -x /usr/bin/prometheus ] && dpkg -S /usr/bin/prometheus >/dev/null 2>&1; then
  cp /usr/bin/prometheus "$work/prometheus"
else
  (cd "$work" && apt-get download prometheus >/dev/null && dpkg-deb -x prometheus_*.deb root)
  cp "$work/root/usr/bin/prometheus" "$work/prometheus"
fi
base_id="$(docker image inspect -f '{{.Id}}' "$base")"
inputs="$( { cat "$work/prometheus" "$here/build.sh"; echo "$base_id"; } | sha256sum | cut -c1-16)"
present="$(docker image inspect -f '{{index .Config.Labels "org.jiexu.image-inputs"}}' "$tag" 2>/dev/null || true)"
if [ "$present" = "$inputs" ] && [ -z "${JIEXU_REBUILD_IMAGE:-}" ]; then
  echo "image $tag already built from these inputs ($inputs)"
  exit 0
fi
cat >"$work/Dockerfile" <<DOCKERFILE
FROM $base
COPY prometheus /usr/local/bin/prometheus
USER root
RUN install -d -o 10001 -g 10001 -m 0700 /prometheus
USER 10001:10001
WORKDIR /prometheus
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
DOCKERFILE
DOCKER_BUILDKIT=0 docker build --quiet --label "org.jiexu.image-inputs=$inputs" -t "$tag" "$work" >/dev/null
echo "built $tag ($(( $(docker image inspect -f '{{.Size}}' "$tag") / 1000000 )) MB, shares the agent image's layers)"
