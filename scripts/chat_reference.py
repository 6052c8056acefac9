"""The chat formats `generate` writes, rendered by independent implementations for
scripts/reference.py (`--only chat`): llama.cpp's built-ins, and for a format llama.cpp
has none of, the model's own Jinja template as transformers renders it (jinja2)."""

from __future__ import annotations

# Conversations with a system message, a reply with spaces around it (which
# some formats trim), several turns, and none of these.
CHAT_CONVERSATIONS = [
    [["system", "Be brief."], ["user", "Hi"], ["assistant", " Hello! "],
     ["user", "Who are you? "]],
    [["user", " Hi "]],
    [["user", "One"], ["assistant", "1"], ["user", "Two"], ["assistant", "2"],
     ["user", "Three"]],
]
# llama.cpp's names of the formats `generate` writes.
CHAT_FORMAT_NAMES = ["chatml", "phi4", "llama3", "zephyr", "phi3", "llama2", "llama2-sys",
                     "llama2-sys-strip", "mistral-v1", "mistral-v3", "mistral-v3-tekken", "mistral-v7",
                     "mistral-v7-tekken", "gemma", "deepseek3", "deepseek2", "deepseek", "granite", "exaone3", "exaone4",
                     "chatglm4", "minicpm", "hunyuan-dense"]
# Formats llama.cpp has no built-in for: the model's own Jinja template, rendered
# by jinja2 as transformers' apply_chat_template renders it. ERNIE 4.5's is
# transformers' DEFAULT_CHAT_TEMPLATE for it (tokenization_ernie4_5.py), the one
# its files carry.
JINJA_FORMATS = {
    "ernie": (
        '{%- if not add_generation_prompt is defined -%}\n'
        '    {%- set add_generation_prompt = true -%}\n{%- endif -%}\n'
        '{%- if not cls_token is defined -%}\n'
        '    {%- set cls_token = "<|begin_of_sentence|>" -%}\n{%- endif -%}\n'
        '{%- if not sep_token is defined -%}\n'
        '    {%- set sep_token = "<|end_of_sentence|>" -%}\n{%- endif -%}\n'
        '{{- cls_token -}}\n'
        '{%- for message in messages -%}\n'
        '    {%- if message["role"] == "user" -%}\n'
        '        {{- "User: " + message["content"] + "\\n" -}}\n'
        '    {%- elif message["role"] == "assistant" -%}\n'
        '        {{- "Assistant: " + message["content"] + sep_token -}}\n'
        '    {%- elif message["role"] == "system" -%}\n'
        '        {{- message["content"] + "\\n" -}}\n'
        '    {%- endif -%}\n'
        '{%- endfor -%}\n'
        '{%- if add_generation_prompt -%}\n'
        '    {{- "Assistant: " -}}\n'
        '{%- endif -%}'
    ),
}


def render() -> tuple[str, list]:
    """llama-cpp-python's version, and each format's renderings of the
    conversations."""
    import ctypes

    import llama_cpp

    formats = []
    for name in CHAT_FORMAT_NAMES:
        texts = []
        for conversation in CHAT_CONVERSATIONS:
            msgs = (llama_cpp.llama_chat_message * len(conversation))(*[
                llama_cpp.llama_chat_message(role=r.encode(), content=c.encode())
                for r, c in conversation])
            buf = ctypes.create_string_buffer(8192)
            n = llama_cpp.llama_chat_apply_template(name.encode(), msgs, len(conversation), True,
                                                    buf, len(buf))
            if n < 0 or n > len(buf):
                raise SystemExit(f"llama_chat_apply_template({name}) gave {n}")
            texts.append(buf.raw[:n].decode())
        formats.append({"name": name, "texts": texts})
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    for name, jinja in JINJA_FORMATS.items():
        template = env.from_string(jinja)
        texts = [template.render(messages=[{"role": r, "content": c} for r, c in conversation],
                                 add_generation_prompt=True)
                 for conversation in CHAT_CONVERSATIONS]
        formats.append({"name": name, "texts": texts, "jinja": jinja})
    return llama_cpp.__version__, formats
