# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fetch one model from the Hugging Face Hub into the host's models directory.

Run by the models role inside the FastChat image (the host needs no Python
packages). The token is never an argument: huggingface_hub reads the file
named by HF_TOKEN_PATH. The model is downloaded into a staging directory next
to its destination and renamed into place only when complete, with a
manifest (.slm-fastchat-manifest.json) recording repository, resolved commit
and file sizes, which the collection's model_manifest module verifies.
"""

import argparse
import fnmatch
import json
import os
import shutil
import sys
import time

MANIFEST_NAME = '.slm-fastchat-manifest.json'
GIB = 1024 ** 3


def directory_files(root):
    """Map each file's path relative to ``root`` to its size, skipping the manifest and hidden caches."""
    files = {}
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = [name for name in subdirs if not name.startswith('.')]
        for name in names:
            if name == MANIFEST_NAME:
                continue
            full = os.path.join(directory, name)
            files[os.path.relpath(full, root)] = os.path.getsize(full)
    return files


def write_manifest(root, **fields):
    manifest = dict(fields, format=1, files=directory_files(root))
    if not manifest['files']:
        raise ValueError('%s holds no files' % root)
    with open(os.path.join(root, MANIFEST_NAME), 'w') as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
    return manifest


def place(staging, dest):
    """Swap ``staging`` in as ``dest``; the old directory is removed only after the rename."""
    old = None
    if os.path.exists(dest):
        old = '%s.old-%d' % (dest, os.getpid())
        os.rename(dest, old)
    os.rename(staging, dest)
    if old:
        shutil.rmtree(old)


def wanted(name, patterns):
    return not patterns or any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def check_space(parent, needed_bytes):
    free = shutil.disk_usage(parent).free
    # Room for the download plus 5 % and 1 GiB for the filesystem's own needs.
    required = int(needed_bytes * 1.05) + GIB
    if free < required:
        raise SystemExit('not enough disk space in %s: the model needs %.1f GiB, %.1f GiB are free'
                         % (parent, required / GIB, free / GIB))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repo', required=True)
    parser.add_argument('--revision', required=True)
    parser.add_argument('--dest', required=True)
    parser.add_argument('--allow-pattern', action='append', default=[])
    args = parser.parse_args(argv)

    from huggingface_hub import HfApi, snapshot_download

    parent = os.path.dirname(os.path.abspath(args.dest))
    staging = os.path.join(parent, '.staging-' + os.path.basename(args.dest))
    info = HfApi().model_info(args.repo, revision=args.revision, files_metadata=True)
    files = [sibling for sibling in info.siblings if wanted(sibling.rfilename, args.allow_pattern)]
    needed = sum(sibling.size or 0 for sibling in files)
    print('%s@%s: %d files, %.2f GiB' % (args.repo, info.sha, len(files), needed / GIB), flush=True)
    check_space(parent, needed)

    if os.path.exists(staging):
        shutil.rmtree(staging)
    started = time.time()
    snapshot_download(repo_id=args.repo, revision=info.sha, local_dir=staging,
                      allow_patterns=args.allow_pattern or None)
    shutil.rmtree(os.path.join(staging, '.cache'), ignore_errors=True)
    manifest = write_manifest(staging, source='hub', repo=args.repo, revision=info.sha,
                              requested_revision=args.revision)
    place(staging, args.dest)
    print('placed %s (%d files) in %.0f s' % (args.dest, len(manifest['files']), time.time() - started), flush=True)


if __name__ == '__main__':
    sys.exit(main())
