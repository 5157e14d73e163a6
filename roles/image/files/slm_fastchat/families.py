# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The model families: the one list both the image and the collection read.

Plain data, importable without FastChat: ``slm_fastchat.templates`` renders
these in the image; the collection's model-list checks
(``plugins/module_utils/_workers.py``) load this file to know which
``family`` values are valid. Add a family here (and its chat template and
tokenizer fixture for tests/unit/roles/image/test_templates.py).
"""

import collections

Family = collections.namedtuple('Family', [
    'name',
    'system',          # the system turn, with {system_message}; None: the family has no system role
    'always_system',   # render the system turn even when the message is empty (Llama 3.1 does)
    'default_system',  # used when the request brings no system message
    'user',            # text before a user message
    'assistant',       # text before an assistant message, and the generation prompt
    'end',             # text after every message
    'trim',            # strip whitespace around each message, as the model's template does
    'stop',            # stop strings; the worker resolves them to token ids
])

FAMILIES = collections.OrderedDict((family.name, family) for family in (
    # Plain ChatML (e.g. Qwen2-style fine-tunes without a default system prompt).
    Family('chatml', '<|im_start|>system\n{system_message}<|im_end|>\n', False, '',
           '<|im_start|>user\n', '<|im_start|>assistant\n', '<|im_end|>\n', False, ['<|im_end|>']),
    # SmolLM2-Instruct: ChatML with the system prompt its template adds when there is none.
    Family('smollm2', '<|im_start|>system\n{system_message}<|im_end|>\n', False,
           'You are a helpful AI assistant named SmolLM, trained by Hugging Face',
           '<|im_start|>user\n', '<|im_start|>assistant\n', '<|im_end|>\n', False, ['<|im_end|>']),
    # microsoft/phi-4: ChatML tokens, <|im_sep|> after the role, no newlines.
    Family('phi-4', '<|im_start|>system<|im_sep|>{system_message}<|im_end|>', False, '',
           '<|im_start|>user<|im_sep|>', '<|im_start|>assistant<|im_sep|>', '<|im_end|>', False, ['<|im_end|>']),
    # Meta-Llama-3-Instruct.
    Family('llama-3', '<|start_header_id|>system<|end_header_id|>\n\n{system_message}<|eot_id|>', False, '',
           '<|start_header_id|>user<|end_header_id|>\n\n', '<|start_header_id|>assistant<|end_header_id|>\n\n',
           '<|eot_id|>', True, ['<|eot_id|>']),
    # Llama-3.1-Instruct without tools: a system turn with the knowledge cut-off, always.
    Family('llama-3.1', '<|start_header_id|>system<|end_header_id|>\n\n'
           'Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n{system_message}<|eot_id|>', True, '',
           '<|start_header_id|>user<|end_header_id|>\n\n', '<|start_header_id|>assistant<|end_header_id|>\n\n',
           '<|eot_id|>', True, ['<|eot_id|>', '<|eom_id|>']),
    # gemma-2-it: no system role; a system message opens the first user turn.
    Family('gemma-2', None, False, '',
           '<start_of_turn>user\n', '<start_of_turn>model\n', '<end_of_turn>\n', True, ['<end_of_turn>']),
))

# What separates a system message from the first user message where the family has no system role.
MERGED_SYSTEM_SEPARATOR = '\n\n'
