"""Retrieval and answer from one model: chunk documents, embed them (EOS embeddings), search, generate.

    enc = Encoder.from_pretrained("runs/default/model")
    index, update = build_index(enc, ["examples/docs"], "runs/rag", model_name="runs/default/model")
    result = ask(enc, index, "When was the lighthouse built?")     # build_index adds only new/changed files
    print(result)     # question, answer, numbered sources; result.answer, result.hits
    enc, index, model = open_index("runs/rag")      # later: the index, with the encoder that built it

The modules, in the order data flows: ``documents`` (finding and reading .txt/.md/.jsonl files),
``chunking`` (word windows, token limits), ``manifest`` (the typed record of an index), ``storage`` (the
index's data files, generation by generation), ``index`` (``RagIndex``: create, open, update, search,
save), ``build`` (``build_index`` under the writer lock, ``open_index``), ``answer`` (``fit_prompt``,
``ask``). Writers hold ``DIR/.lock`` for a whole update, so a second ``rag index`` on the same folder waits
for the first and then adds to its result; readers take no lock.
"""

from unimae.rag.answer import PromptTooLongError, RagAnswer, RagPrompt, ask, build_prompt, fit_prompt
from unimae.rag.build import build_index, check_build_options, open_index, writer_lock
from unimae.rag.chunking import Chunk, chunk_text, chunk_token_limit, source_parts, token_spans
from unimae.rag.documents import SUFFIXES, DocumentError, collect_files, read_documents
from unimae.rag.index import Hit, Hits, IndexUpdate, RagIndex, numbered_hits
from unimae.rag.manifest import MANIFEST, IndexedFile, Manifest, RagIndexError, read_manifest

__all__ = [
    "MANIFEST",
    "SUFFIXES",
    "Chunk",
    "DocumentError",
    "Hit",
    "Hits",
    "IndexUpdate",
    "IndexedFile",
    "Manifest",
    "PromptTooLongError",
    "RagAnswer",
    "RagIndex",
    "RagIndexError",
    "RagPrompt",
    "ask",
    "build_index",
    "build_prompt",
    "check_build_options",
    "chunk_text",
    "chunk_token_limit",
    "collect_files",
    "fit_prompt",
    "numbered_hits",
    "open_index",
    "read_documents",
    "read_manifest",
    "source_parts",
    "token_spans",
    "writer_lock",
]
