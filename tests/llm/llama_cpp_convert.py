"""Run llama.cpp's own convert_hf_to_gguf.py model class on a saved transformers model, as an
independent GGUF writer for the architecture tests (a script: run in its own process, so that
the vendored gguf-py it imports never shadows the installed ``gguf`` package of the tests).

    python llama_cpp_convert.py LLAMA_CPP_DIR HF_MODEL_DIR OUT.gguf [HF_MODEL_DIR OUT.gguf ...]

The tiny models have no tokenizer files, so ``set_vocab`` writes a stand-in SentencePiece
vocabulary of ``vocab_size`` tokens; everything else is the converter's.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(llama_cpp: Path, pairs: list[tuple[Path, Path]]) -> None:
    sys.path.insert(0, str(llama_cpp))
    sys.path.insert(1, str(llama_cpp / "gguf-py"))
    for model_dir, out in pairs:  # one process for every model: torch is imported once
        convert(model_dir, out)


def convert(model_dir: Path, out: Path) -> None:
    import gguf  # the vendored gguf-py, as convert_hf_to_gguf.py imports it
    import torch
    from conversion import ModelBase, ModelType, get_model_architecture, get_model_class

    hparams = ModelBase.load_hparams(model_dir, False)
    cls = get_model_class(get_model_architecture(hparams, ModelType.TEXT), mmproj=False)
    n = hparams["vocab_size"]

    def set_vocab(self) -> None:
        w = self.gguf_writer
        w.add_tokenizer_model("llama")
        w.add_token_list([f"<t{i}>".encode() for i in range(n)])
        w.add_token_scores([0.0] * n)
        w.add_token_types([gguf.TokenType.NORMAL] * n)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)

    cls.set_vocab = set_vocab
    with torch.inference_mode():
        cls(model_dir, gguf.LlamaFileType.ALL_F32, out, eager=True).write()


if __name__ == "__main__":
    args = [Path(a) for a in sys.argv[1:]]
    main(args[0], list(zip(args[1::2], args[2::2], strict=True)))
