#!/usr/bin/env bash
# Build a Debian image from a recipe (tests/images/recipes/NAME.env) with
# debootstrap and import it into the local Docker engine; no registry needed.
#
# The recipe hash (this script, the recipe and its rootfs overlay) is the tag,
# so an image built from the same recipe is never rebuilt. The image is also
# tagged REPO:SUITE. With ARCHIVE, the image is also written there with
# `docker save` (for loading into an engine inside a test host).
# Usage: build.sh NAME [ARCHIVE]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
name=${1:?usage: build.sh RECIPE [ARCHIVE]}
archive=${2:-}
recipe_file=$here/recipes/$name.env
mirror=${SLM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
repo='' suite='' packages='' overlay='' systemd=no
# shellcheck source=/dev/null
. "$recipe_file"

# Units that cannot work in a container (no kernel modules, read-only /proc/sys,
# no consoles); left enabled they fail and mark the system "degraded".
masked_units=(
  systemd-modules-load.service systemd-sysctl.service getty.target
  console-getty.service getty@tty1.service systemd-udevd.service
  systemd-udev-trigger.service systemd-firstboot.service
  systemd-networkd-wait-online.service
)

recipe=$( { cat "$0" "$recipe_file"; echo "$mirror";
            if [ -n "$overlay" ]; then
              (cd "$here/$overlay" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
            fi; } | sha256sum | cut -c1-12)
image="$repo:$suite-$recipe"

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "image $image is up to date"
else
  command -v debootstrap >/dev/null || {
    echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
  work=$(mktemp -d /var/tmp/slm-image.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  echo "building image $image (debootstrap $suite, about a minute)"
  debootstrap --variant=minbase --include="$packages" "$suite" "$work/root" "$mirror" \
    > "$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
  root=$work/root
  if [ -n "$overlay" ]; then cp -a "$here/$overlay/." "$root/"; fi
  changes=()
  if [ "$systemd" = yes ]; then
    # An empty machine-id makes systemd generate a fresh one at each boot, so
    # two test hosts never share an identity.
    : > "$root/etc/machine-id"
    rm -f "$root/var/lib/dbus/machine-id"
    for unit in "${masked_units[@]}"; do
      ln -sf /dev/null "$root/etc/systemd/system/$unit"
    done
    changes+=(--change 'CMD ["/lib/systemd/systemd"]')
  else
    changes+=(--change 'CMD ["/bin/bash"]')
  fi
  # Keep images small: `apt-get update` refills what is removed here.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import "${changes[@]}" \
    --change "LABEL org.slm-fastchat.recipe=$name-$recipe" - "$image" >/dev/null
  echo "built $image"
fi
docker tag "$image" "$repo:$suite"
if [ -n "$archive" ]; then
  docker save -o "$archive" "$repo:$suite"
  echo "saved $repo:$suite to $archive"
fi
