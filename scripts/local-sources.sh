#!/usr/bin/env bash
# Put the local build sources that stand in for registries into DIR:
#   DIR/debian12-base.tar  a Debian 12 base image (docker save), for image_base_archive
#   DIR/wheels/            the CPU torch wheel from pip's local find-links, for image_wheels_dir
# Used by `make demo` and the e2e scenario; existing files are kept.
# Usage: local-sources.sh DIR
set -euo pipefail
dir=${1:?usage: local-sources.sh DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$dir"
[ -s "$dir/debian12-base.tar" ] || "$here/tests/images/build.sh" debian12-base "$dir/debian12-base.tar"
if ! ls "$dir"/wheels/torch-*.whl >/dev/null 2>&1; then
  pip download --quiet --no-deps --dest "$dir/wheels" 'torch==2.13.0+cpu'
fi
