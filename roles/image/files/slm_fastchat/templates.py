# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Conversation templates that reproduce the models' own chat templates.

FastChat 0.2.36 has no template for phi-4, Llama 3, gemma-2 or plain ChatML,
and none of its separator styles can leave out an empty system turn while
wrapping a given one in role tokens, nor move a system message into the first
user turn (gemma-2 has no system role). So each family is a small table
of strings (``slm_fastchat.families``) rendered by :class:`FamilyConversation`, a Conversation subclass
that both the worker (``slm_fastchat.model_worker``) and the API server
(``slm_fastchat.api_server``, which builds the prompt) use.

The beginning-of-sequence token is never part of a prompt here: the worker
tokenises prompts with the tokenizer's defaults, which add it.
"""

import dataclasses

from fastchat.conversation import Conversation, SeparatorStyle, register_conv_template

# The family table lives in families.py, which the collection reads too.
from slm_fastchat.families import FAMILIES, MERGED_SYSTEM_SEPARATOR, Family  # noqa: F401  pylint: disable=unused-import


class FamilyConversation(Conversation):
    """A Conversation that renders the families above by name and anything else as FastChat does."""

    def get_prompt(self):
        family = FAMILIES.get(self.name)
        if family is None:
            return super().get_prompt()
        clean = (lambda text: text.strip()) if family.trim else (lambda text: text)
        system = self.system_message or ''
        prompt = ''
        if family.system is not None and (system or family.always_system):
            prompt += family.system.format(system_message=clean(system))
        for index, (role, message) in enumerate(self.messages):
            if isinstance(message, tuple):
                message = message[0]
            if message is None:
                prompt += role
                continue
            if index == 0 and family.system is None and system:
                message = system + MERGED_SYSTEM_SEPARATOR + message
            prompt += role + clean(message) + family.end
        return prompt

    def copy(self):
        return FamilyConversation(
            name=self.name, system_template=self.system_template, system_message=self.system_message,
            roles=self.roles, messages=[[role, message] for role, message in self.messages], offset=self.offset,
            sep_style=self.sep_style, sep=self.sep, sep2=self.sep2, stop_str=self.stop_str,
            stop_token_ids=self.stop_token_ids)


def conversation(family):
    """The registered form of ``family``; its plain fields approximate it for a stock FastChat."""
    return FamilyConversation(
        name=family.name,
        system_template=family.system or '{system_message}',
        system_message=family.default_system,
        roles=(family.user, family.assistant),
        messages=[],
        offset=0,
        sep_style=SeparatorStyle.NO_COLON_SINGLE,
        sep=family.end,
        stop_str=list(family.stop),
        stop_token_ids=[],
    )


def register():
    """Register every family's template with FastChat, replacing any of the same name."""
    for family in FAMILIES.values():
        register_conv_template(conversation(family), override=True)
    return list(FAMILIES)


def stop_token_ids(tokenizer, stop_strings):
    """Ids of the stop strings that are single tokens of ``tokenizer``.

    FastChat decodes replies with skip_special_tokens, so a special token
    such as <end_of_turn> never appears in the text its stop strings are
    matched against: generation has to stop on the token id instead.
    """
    if isinstance(stop_strings, str):
        stop_strings = [stop_strings]
    ids = []
    for text in stop_strings or []:
        encoded = tokenizer.encode(text, add_special_tokens=False)
        if len(encoded) == 1 and encoded[0] not in ids:
            ids.append(encoded[0])
    return ids


def conversation_from_dict(fields):
    """A FamilyConversation from a worker's ``/worker_get_conv_template`` answer (the dataclass as JSON)."""
    known = {field.name for field in dataclasses.fields(Conversation)}
    values = {name: value for name, value in fields.items() if name in known}
    values['roles'] = tuple(values.get('roles') or ())
    values['messages'] = [list(message) for message in values.get('messages') or []]
    if 'sep_style' in values:
        values['sep_style'] = SeparatorStyle(values['sep_style'])
    return FamilyConversation(**values)


def render_messages(conv, messages):
    """The prompt for OpenAI chat ``messages`` ((role, text) pairs) in ``conv``'s template, ending with the
    assistant's turn opened.

    System and developer messages (developer is the newer name for system)
    become the template's system message, joined by blank lines wherever they
    stand; without one the template's default stays. Tool results become
    user turns: none of the families has a tool role.
    """
    conv = conv.copy()
    system = [text for role, text in messages if role in ('system', 'developer')]
    if system:
        conv.system_message = MERGED_SYSTEM_SEPARATOR.join(system)
    for role, text in messages:
        if role in ('system', 'developer'):
            continue
        conv.append_message(conv.roles[1] if role == 'assistant' else conv.roles[0], text)
    conv.append_message(conv.roles[1], None)
    return conv.get_prompt()
