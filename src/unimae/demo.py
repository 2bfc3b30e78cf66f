"""A short demo of one model doing both jobs: a similarity table from EOS embeddings, and a chat reply."""

from __future__ import annotations

from unimae.encoding.encoder import Encoder

SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar.",
    "The stock market fell sharply today.",
    "Shares dropped as investors panicked.",
    "The cat sleeps on the warm windowsill.",
    "A kitten is napping in the sun.",
]
QUESTION = "What is the capital of France?"


def similarity_table(labels: list[str], sims) -> str:
    head = "      " + " ".join(f"{j:>5d}" for j in range(len(labels)))
    rows = [
        f"{i:>5d} " + " ".join(f"{v:5.2f}" for v in sims[i]) + f"  {labels[i]}" for i in range(len(labels))
    ]
    return "\n".join([head, *rows])


def run_demo(model: str = "runs/default/model", pooling: str | None = None) -> None:
    enc = Encoder.from_pretrained(model, pooling=pooling)
    vecs = enc.encode(SENTENCES, normalize_embeddings=True)
    how = f"{enc.pooling}-pooled" + (f", prompt {enc.prompt!r}" if enc.prompt else "")
    print(f"\ncosine similarity of embeddings ({how}; {model}):")
    print(similarity_table(SENTENCES, vecs @ vecs.T))
    print(f"\nuser: {QUESTION}\nmodel: {enc.generate(QUESTION, max_new_tokens=48)}")
