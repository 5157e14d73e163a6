#!/usr/bin/env bash
# Run `ansible-test sanity --local` offline.
#
# ansible-test wants the collection at ansible_collections/<ns>/<name> and
# resolves symlinks, so the tracked tree is copied there. Its sanity venvs are
# bootstrapped with a get-pip script it downloads from a host CI cannot reach;
# a stand-in in its cache bootstraps pip from the interpreter's ensurepip and
# installs the pip version ansible-test asked for from PyPI.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# Outside the checkout: ansible-test looks upward for a .git and would list
# the copy's files through the checkout's git, which ignores them.
dest=${SLM_SANITY_DIR:-${TMPDIR:-/tmp}/slm-fastchat-sanity}/ansible_collections/slm/fastchat
python=${PYTHON:-python3.11}

pip_version=$(python - <<'PY'
import re, ansible_test, os
src = open(os.path.join(os.path.dirname(ansible_test.__file__), '_internal', 'python_requirements.py')).read()
print(re.search(r"pip='([0-9.]+)'", src).group(1))
PY
)
cache=~/.ansible/test/cache/get_pip_${pip_version//./_}.py
mkdir -p "$(dirname "$cache")"
cat > "$cache" <<'PY'
# Stand-in for get-pip.py (written by slm.fastchat's scripts/sanity.sh).
import subprocess
import sys

# In a child process: ensurepip.bootstrap() in this one would blank out pip's
# configuration (PIP_CONFIG_FILE=/dev/null), losing a site CA bundle or index.
subprocess.check_call([sys.executable, '-m', 'ensurepip', '--upgrade'])
args = [arg for arg in sys.argv[1:] if arg not in ('--no-setuptools', '--no-wheel')]
sys.exit(subprocess.call([sys.executable, '-m', 'pip', 'install', '--disable-pip-version-check'] + args))
PY

rm -rf "$dest"
mkdir -p "$dest"
# Tracked and new files, as a clean clone plus this change would have them.
(cd "$repo" && git ls-files -co --exclude-standard -z \
   | tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -xf - -C "$dest"
cd "$dest"
# The copy has no .git of its own; ansible-test then checks every file it holds.
exec ansible-test sanity --local --python "${python#python}" --color no "$@"
