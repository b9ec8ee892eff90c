"""Chat templates (jinja2 and the built-in fallbacks) and multi-turn sessions."""

from __future__ import annotations

import pytest

from trueno.errors import ModelError
from trueno.llm import Model
from trueno.llm.chat import ChatSession, render_chat

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Capital of France?"},
]

# the ChatML template as HF tokenizer_config files write it
CHATML_JINJA = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_builtin_chatml():
    text = render_chat(MESSAGES)
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi")
    assert text.endswith("<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n")


def test_jinja_template_matches_builtin_chatml():
    pytest.importorskip("jinja2")
    assert render_chat(MESSAGES, CHATML_JINJA) == render_chat(MESSAGES)


def test_builtin_gemma_folds_system_into_first_user_turn():
    text = render_chat(MESSAGES, fallback="gemma", bos_token="<bos>")
    assert text == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nCapital of France?<end_of_turn>\n<start_of_turn>model\n"
    )


def test_template_errors_are_model_errors():
    pytest.importorskip("jinja2")
    with pytest.raises(ModelError, match="no system"):
        render_chat(MESSAGES, "{{ raise_exception('no system') }}")


def test_session_keeps_history_and_reuses_the_cache(tiny_model_path):
    model = Model.load(tiny_model_path("gemma3")[0], ctx_size=1024)
    chat = ChatSession(model, temperature=0)
    first = chat.send("the cat", max_tokens=4)
    reply = first.text()
    assert chat.messages[-1] == {"role": "assistant", "content": reply.strip()}
    second = chat.send("the end", max_tokens=4)
    second.text()
    assert second.stats.n_cached > 0  # the first turn's prompt was not run again
    assert [m["role"] for m in chat.messages] == ["user", "assistant"] * 2
