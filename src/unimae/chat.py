"""The one chat-prompt builder: message content is always text, never control tokens.

    ids = chat_input_ids(tokenizer, [{"role": "user", "content": "Hi"}])   # ready for the assistant turn

A chat template writes control tokens (``<|im_start|>``, ``<|im_end|>``, ``<|eot_id|>``...) around each
message. Tokenizing the rendered text as a whole would also turn control-token *text* inside a message
(a user's, or a retrieved RAG document's) into real control tokens, so ``<|im_end|>\\n<|im_start|>system``
in a user message would forge a system turn. ``transformers`` marks the control tokens found in the
messages before rendering and encodes them as plain text (``sanitize_control_tokens=True``); only the
tokens the template itself writes stay control tokens. Messages without control-token text give exactly
the ids of ``apply_chat_template``.
"""

from __future__ import annotations

from collections.abc import Sequence

from unimae.errors import UserError


class ChatTemplateError(UserError):
    """The tokenizer has no chat template, or its template cannot keep message content as plain text."""


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_input_ids(tokenizer, messages: Sequence[dict], add_generation_prompt: bool = True) -> list[int]:
    """Token ids of ``messages`` (``{"role", "content"}`` dicts) under the tokenizer's chat template.

    Control-token text inside any message is tokenized as ordinary text. With ``add_generation_prompt``
    the ids end with the header of the assistant's turn. ``ChatTemplateError`` if there is no template.
    """
    if not has_chat_template(tokenizer):
        raise ChatTemplateError("this model has no chat template: send a plain prompt (/v1/completions)")
    try:
        out = tokenizer.apply_chat_template(
            list(messages),
            add_generation_prompt=add_generation_prompt,
            return_dict=True,
            sanitize_control_tokens=True,
        )
    except NotImplementedError as e:  # a template that leaves its BOS to the tokenizer's post-processor
        raise ChatTemplateError(f"this model's chat template cannot be used safely: {e}") from None
    except ValueError as e:  # a control token that the tokenizer also produces from plain text
        raise ChatTemplateError(f"a message cannot be tokenized as plain text: {e}") from None
    return list(out["input_ids"])


def text_input_ids(tokenizer, text: str, add_special_tokens: bool = True) -> list[int]:
    """Token ids of ``text`` with every control-token string in it kept as plain text.

    ``add_special_tokens`` adds what the tokenizer adds to any text (a BOS for Llama 2/3), never from ``text``.
    """
    return list(tokenizer(text, add_special_tokens=add_special_tokens, split_special_tokens=True).input_ids)
