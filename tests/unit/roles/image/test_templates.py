# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each family's FastChat prompt is, token for token, what the model's own chat template renders.

The model side is transformers' apply_chat_template with the model's
chat_template string (tests/fixtures/chat_templates); the FastChat side is
built the way FastChat's API server builds it: the template copied from the
worker as JSON, messages appended, an empty assistant turn, get_prompt().
Both are tokenised as the worker and transformers do: the prompt with the
tokenizer's special tokens (BOS), the chat template's output without.
"""

import dataclasses
import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, '..', '..', '..', '..')
sys.path.insert(0, os.path.join(ROOT, 'roles', 'image', 'files'))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'fixtures', 'models'))
import char_tokenizer  # noqa: E402  pylint: disable=wrong-import-position
from slm_fastchat import templates  # noqa: E402  pylint: disable=wrong-import-position

from fastchat.conversation import SeparatorStyle, get_conv_template  # noqa: E402  pylint: disable=wrong-import-position

CHAT_TEMPLATES = os.path.join(ROOT, 'tests', 'fixtures', 'chat_templates')

# Special tokens and whether the real tokenizer adds a BOS token (Llama 3 and gemma do; GPT-2 style BPE does not).
TOKENIZERS = {
    'chatml': (['<|im_start|>', '<|im_end|>', '<|endoftext|>'], None, '<|im_end|>'),
    'smollm2': (['<|endoftext|>', '<|im_start|>', '<|im_end|>'], None, '<|im_end|>'),
    'phi-4': (['<|endoftext|>', '<|im_start|>', '<|im_sep|>', '<|im_end|>'], None, '<|im_end|>'),
    'llama-3': (['<|begin_of_text|>', '<|end_of_text|>', '<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>'],
                '<|begin_of_text|>', '<|eot_id|>'),
    'llama-3.1': (['<|begin_of_text|>', '<|end_of_text|>', '<|start_header_id|>', '<|end_header_id|>',
                   '<|eot_id|>', '<|eom_id|>'], '<|begin_of_text|>', '<|eot_id|>'),
    'gemma-2': (['<pad>', '<eos>', '<bos>', '<start_of_turn>', '<end_of_turn>'], '<bos>', '<eos>'),
}

SYSTEM = 'You are a terse assistant. Answer in one line.'
TURNS = [
    {'role': 'user', 'content': 'What is the capital of France?'},
    {'role': 'assistant', 'content': 'Paris.'},
    # Surrounding whitespace: templates that trim must trim it, the others keep it.
    {'role': 'user', 'content': '  And of Japan?\n'},
]


def tokenizer(family):
    special, bos, eos = TOKENIZERS[family]
    tok = char_tokenizer.build(special, bos=bos, eos=eos)
    with open(os.path.join(CHAT_TEMPLATES, family + '.jinja'), encoding='utf-8') as handle:
        tok.chat_template = handle.read()
    return tok


def fastchat_prompt(family, messages):
    """The prompt as FastChat's OpenAI API server builds it from the worker's template."""
    templates.register()
    served = json.loads(json.dumps(dataclasses.asdict(get_conv_template(family)), default=int))
    conv = templates.FamilyConversation(
        name=served['name'], system_template=served['system_template'], system_message=served['system_message'],
        roles=served['roles'], messages=list(served['messages']), offset=served['offset'],
        sep_style=SeparatorStyle(served['sep_style']), sep=served['sep'], sep2=served['sep2'],
        stop_str=served['stop_str'], stop_token_ids=served['stop_token_ids'])
    for message in messages:
        if message['role'] == 'system':
            conv.set_system_message(message['content'])
        elif message['role'] == 'user':
            conv.append_message(conv.roles[0], message['content'])
        else:
            conv.append_message(conv.roles[1], message['content'])
    conv.append_message(conv.roles[1], None)
    return conv.get_prompt()


def model_prompt_ids(tok, messages):
    return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)


def as_worker_tokenizes(tok, prompt):
    return tok(prompt).input_ids


def test_every_family_has_a_chat_template_and_a_tokenizer():
    assert sorted(templates.FAMILIES) == sorted(TOKENIZERS)
    assert sorted(name[:-len('.jinja')] for name in os.listdir(CHAT_TEMPLATES) if name.endswith('.jinja')) \
        == sorted(templates.FAMILIES)


@pytest.mark.parametrize('family', [family for family in TOKENIZERS if family != 'gemma-2'])
@pytest.mark.parametrize('with_system', [True, False], ids=['system', 'no-system'])
def test_prompt_matches_the_models_own_template(family, with_system):
    tok = tokenizer(family)
    messages = ([{'role': 'system', 'content': SYSTEM}] if with_system else []) + TURNS
    expected = model_prompt_ids(tok, messages)
    prompt = fastchat_prompt(family, messages)
    assert as_worker_tokenizes(tok, prompt) == expected, (prompt, tok.decode(expected))
    # Role markers are single special tokens, not spelled out character by character.
    assert len(expected) < len(tok.decode(expected))


def test_gemma_2_puts_the_system_message_into_the_first_user_turn():
    tok = tokenizer('gemma-2')
    # gemma-2's own template refuses a system message outright ...
    with pytest.raises(Exception, match='System role not supported'):
        model_prompt_ids(tok, [{'role': 'system', 'content': SYSTEM}] + TURNS)
    # ... so it becomes the first paragraph of the first user message.
    merged = [dict(TURNS[0], content=SYSTEM + '\n\n' + TURNS[0]['content'])] + TURNS[1:]
    prompt = fastchat_prompt('gemma-2', [{'role': 'system', 'content': SYSTEM}] + TURNS)
    assert as_worker_tokenizes(tok, prompt) == model_prompt_ids(tok, merged)
    assert prompt.startswith('<start_of_turn>user\n' + SYSTEM + '\n\nWhat is the capital')


def test_gemma_2_without_a_system_message():
    tok = tokenizer('gemma-2')
    assert as_worker_tokenizes(tok, fastchat_prompt('gemma-2', TURNS)) == model_prompt_ids(tok, TURNS)


def test_bos_is_added_once_by_the_tokenizer_not_by_the_template():
    tok = tokenizer('llama-3')
    ids = as_worker_tokenizes(tok, fastchat_prompt('llama-3', TURNS))
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id


def test_smollm2_supplies_its_default_system_prompt():
    prompt = fastchat_prompt('smollm2', TURNS)
    assert prompt.startswith('<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face'
                             '<|im_end|>\n<|im_start|>user\n')


@pytest.mark.parametrize('family, stop', [
    ('gemma-2', '<end_of_turn>'), ('llama-3', '<|eot_id|>'), ('phi-4', '<|im_end|>'), ('chatml', '<|im_end|>'),
])
def test_stop_strings_resolve_to_the_tokenizers_ids(family, stop):
    tok = tokenizer(family)
    templates.register()
    assert templates.stop_token_ids(tok, get_conv_template(family).stop_str) == [tok.convert_tokens_to_ids(stop)]


def test_stop_strings_that_are_not_one_token_are_left_to_text_matching():
    tok = tokenizer('gemma-2')
    assert templates.stop_token_ids(tok, ['<|im_end|>', 'Observation:']) == []


def test_fastchat_templates_still_render_as_before():
    templates.register()
    conv = get_conv_template('qwen-7b-chat')
    conv.append_message(conv.roles[0], 'hi')
    conv.append_message(conv.roles[1], None)
    assert conv.get_prompt() == ('<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n'
                                 '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n')
