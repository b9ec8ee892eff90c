"""Chat: render messages with the model's ``tokenizer.chat_template`` (jinja2, imported when
first needed) or a built-in ChatML / Gemma template, and keep a conversation going."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from trueno.errors import ModelError
from trueno.gguf.constants import Keys

if TYPE_CHECKING:
    from trueno.llm.generate import Generation
    from trueno.llm.model import Model

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}


def chatml(messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
    out = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return out + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def gemma(
    messages: Sequence[Message], add_generation_prompt: bool = True, bos_token: str = "<bos>"
) -> str:
    """Gemma's turn format; a system message is folded into the first user turn."""
    out, system = bos_token, ""
    for m in messages:
        if m["role"] == "system":
            system += m["content"] + "\n\n"
            continue
        role = "model" if m["role"] == "assistant" else m["role"]
        content = system + m["content"] if role == "user" else m["content"]
        system = "" if role == "user" else system
        out += f"<start_of_turn>{role}\n{content.strip()}<end_of_turn>\n"
    return out + ("<start_of_turn>model\n" if add_generation_prompt else "")


def render_chat(
    messages: Sequence[Message],
    template: str | None = None,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    fallback: str = "chatml",
) -> str:
    """Render ``messages`` with a jinja2 chat ``template``, or the built-in ``fallback``."""
    if not template:
        if fallback == "gemma":
            return gemma(messages, add_generation_prompt, bos_token or "<bos>")
        return chatml(messages, add_generation_prompt)
    try:
        from jinja2.exceptions import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as exc:  # pragma: no cover - jinja2 is in the chat extra
        raise ModelError("the model's chat template needs jinja2 (pip install jinja2)") from exc

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template).render(
            messages=list(messages),
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
        )
    except TemplateError as exc:
        raise ModelError(f"chat template failed: {exc}") from exc


class ChatSession:
    """A conversation with a model: ``for piece in chat.send("hi"): ...``.

    Each turn re-renders the whole conversation; the model's KV cache is reused for the part
    of the prompt that did not change since the last turn.
    """

    def __init__(self, model: Model, system: str | None = None, **sampling: Any) -> None:
        self.model = model
        self.sampling = sampling
        self.messages: list[Message] = []
        if system:
            self.messages.append({"role": "system", "content": system})
        md = model.metadata
        self.template = md.get(Keys.CHAT_TEMPLATE)
        tokens = md.get(Keys.TOKENS)
        tok = model.tokenizer
        self.bos = _token_text(tokens, tok.bos_id)
        self.eos = _token_text(tokens, tok.eos_id)
        self.fallback = "gemma" if model.config.arch.startswith("gemma") else "chatml"

    def prompt(self) -> str:
        return render_chat(self.messages, self.template, True, self.bos, self.eos, self.fallback)

    def send(self, text: str, max_tokens: int = 512) -> Generation:
        """Add a user message; return the streaming reply (a Generation of text pieces).
        The reply joins the conversation once it has been iterated to the end."""
        from trueno.llm.generate import generate

        self.messages.append({"role": "user", "content": text})
        rendered = self.prompt()
        add_bos = bool(self.model.tokenizer.add_bos) and not (
            self.bos and rendered.startswith(self.bos)
        )
        ids = self.model.tokenizer.encode(rendered, add_special=False, parse_special=True)
        if add_bos:
            ids = [self.model.tokenizer.bos_id, *ids]
        gen = generate(self.model, ids, max_tokens=max_tokens, reuse_cache=True, **self.sampling)
        reply = self.messages

        def stream():
            parts = []
            for piece in gen:
                parts.append(piece)
                yield piece
            reply.append({"role": "assistant", "content": "".join(parts).strip()})

        from trueno.llm.generate import Generation

        return Generation(stream(), gen.stats)


def _token_text(tokens, token_id) -> str:
    if tokens is None or token_id is None or token_id < 0 or token_id >= len(tokens):
        return ""
    value = tokens[token_id]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
