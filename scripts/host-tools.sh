#!/usr/bin/env bash
# Make sure this machine has what the tests and the demo need from Debian:
# a Docker engine that answers, debootstrap for the test-host image and a
# static busybox for the fixture image (tests/fixtures/images), shellcheck
# for ansible-test sanity, dpkg-dev and gnupg for the stand-in NVIDIA
# repositories.
#
# PID 1 is not systemd on the build machines, so when no daemon answers we
# start dockerd ourselves and wait for its socket. Idempotent: a second call
# with everything in place installs and starts nothing.
set -euo pipefail

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then need+=(busybox-static); fi
command -v shellcheck >/dev/null || need+=(shellcheck)
# The stand-in NVIDIA repositories (tests/fixtures/nvidia) are built and signed here.
command -v dpkg-scanpackages >/dev/null || need+=(dpkg-dev)
command -v gpg >/dev/null || need+=(gnupg)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing ${need[*]}: run as root or apt-get install them" >&2; exit 1
  fi
  echo "installing ${need[*]} from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi
log=${SLM_DOCKERD_LOG:-/var/log/slm-dockerd.log}
echo "starting dockerd (log: $log)"
nohup dockerd >"$log" 2>&1 &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "dockerd did not answer within 60 s; last lines of $log:" >&2
tail -20 "$log" >&2
exit 1
