#!/usr/bin/env bash
# Build the Debian 13 (trixie) systemd image that Molecule boots as a test host.
#
# No registry is reachable from CI, so the image is made from Debian's mirror
# with debootstrap and imported into the local Docker engine. The build is
# skipped when an image built from the same recipe (this script, the package
# list and the rootfs/ overlay) already exists: the recipe hash is the tag.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=${SLM_TESTHOST_REPO:-slm-fastchat/testhost}
suite=${SLM_TESTHOST_SUITE:-trixie}
mirror=${SLM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=systemd,systemd-sysv,python3,python3-apt,sudo,ca-certificates,iproute2,procps,gnupg,curl

# Units that cannot work in a container (no kernel modules, read-only /proc/sys,
# no consoles); left enabled they fail and mark the system "degraded".
masked_units=(
  systemd-modules-load.service systemd-sysctl.service getty.target
  console-getty.service getty@tty1.service systemd-udevd.service
  systemd-udev-trigger.service systemd-firstboot.service
  systemd-networkd-wait-online.service
)

recipe=$( { cat "$0"; echo "$suite $mirror $packages ${masked_units[*]}";
            (cd "$here/rootfs" && find . -type f -print0 | sort -z | xargs -0 sha256sum); } \
          | sha256sum | cut -c1-12)
image="$repo:$suite-$recipe"

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "test host image $image is up to date"
  docker tag "$image" "$repo:$suite"
  exit 0
fi

command -v debootstrap >/dev/null || {
  echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }

work=$(mktemp -d /var/tmp/slm-testhost.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "building test host image $image (debootstrap $suite, about 2 minutes)"
debootstrap --variant=minbase --include="$packages" "$suite" "$work/root" "$mirror" \
  > "$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; exit 1; }

root=$work/root
cp -a "$here/rootfs/." "$root/"
# An empty machine-id makes systemd generate a fresh one at each boot, so two
# test hosts never share an identity.
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
for unit in "${masked_units[@]}"; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
# Keep the image small: the package cache is refilled by `apt-get update`.
rm -rf "$root"/var/cache/apt/archives/*.deb

tar -C "$root" -c . | docker import \
  --change 'CMD ["/lib/systemd/systemd"]' \
  --change "LABEL org.slm-fastchat.recipe=$recipe" \
  - "$image" >/dev/null
docker tag "$image" "$repo:$suite"
echo "built $image"
