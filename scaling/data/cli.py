"""``scaling data prepare``: the command-line face of ``prepare``.

``register`` plugs the ``data`` command into the project's top-level parser;
``main`` runs it alone (tests, ``python -m scaling.data.cli``). Errors go through the
project's one handler (``scaling.errors.guarded``): bad input prints one ``error:`` line and
exits 2; a traceback means a bug.
"""

from __future__ import annotations

import argparse
import sys

from scaling.cli_help import command
from scaling.errors import debug_requested, guarded
from scaling.data.writer import DEFAULT_VAL_FRACTION, prepare

_SOURCE_HELP = (
    "'stdlib' (this Python's standard library), a text file, a directory, a glob, "
    "a .jsonl or .parquet file, 'hf:NAME[:SPLIT]' or 'hf:/path/saved/with/save_to_disk'"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data prepare`` (its options mirror ``writer.prepare``) to a parser's subcommands."""
    data = command(subparsers, "data", "prepare token datasets",
                   "scaling data prepare --source stdlib --tokenizer byte --out data/stdlib")
    commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    p = command(commands, "prepare", "tokenize a corpus into train.bin / val.bin / metadata.json",
                "scaling data prepare --source stdlib --tokenizer bpe:4096 --out data/stdlib-bpe4k",
                description="Tokenize a corpus into DIR/train.bin, DIR/val.bin and DIR/metadata.json,\n"
                            "holding out whole documents for validation.")
    p.add_argument("--source", default="stdlib", metavar="SPEC", help=_SOURCE_HELP)
    p.add_argument("--tokenizer", default="byte", metavar="byte|bpe:VOCAB",
                   help="byte: UTF-8 bytes plus an end-of-document token; bpe:VOCAB: a BPE of VOCAB tokens "
                        "trained on the corpus")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created atomically)")
    p.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION, metavar="F",
                   help="fraction of documents held out (at least one document)")
    p.add_argument("--seed", type=int, default=0, help="seed of the document split")
    p.add_argument("--text-field", default="text", metavar="NAME",
                   help="field or column holding the text in jsonl, parquet and HF sources")
    p.add_argument("--overwrite", action="store_true", help="replace an existing prepared dataset in DIR")
    p.set_defaults(func=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    """Prepare the dataset the parsed ``data prepare`` args describe, print its ``summary``, return 0.

    Raises DataError (a UserError) for bad input: a missing source, an empty corpus, a bad
    tokenizer spec, an existing output without ``--overwrite``.
    """
    metadata = prepare(
        args.source,
        args.tokenizer,
        args.out,
        val_fraction=args.val_fraction,
        seed=args.seed,
        text_field=args.text_field,
        overwrite=args.overwrite,
    )
    print(summary(metadata, args.out))
    return 0


def summary(metadata: dict, out) -> str:
    """A few lines for a person: source, tokenizer, vocabulary, documents and tokens per split,
    preparation time (seconds) and throughput (tokens/s), and notes on undecodable or binary files.

    ``metadata`` is the dict ``prepare`` returns (the contents of metadata.json).
    """
    train, val = metadata["splits"]["train"], metadata["splits"]["val"]
    total = train["tokens"] + val["tokens"]
    seconds = metadata["prepare_seconds"]
    lines = [
        f"prepared {metadata['source']} with {metadata['tokenizer']['spec']} "
        f"(vocab {metadata['vocab_size']}, {metadata['dtype']}) -> {out}",
        f"  documents: {train['documents']:,} train, {val['documents']:,} val",
        f"  tokens:    {train['tokens']:,} train, {val['tokens']:,} val",
        f"  time:      {seconds:.1f} s, {total / max(seconds, 1e-9) / 1e6:.2f}M tokens/s",
    ]
    if metadata["undecodable_documents"]:
        lines.append(f"  note:      {metadata['undecodable_documents']} documents were not valid UTF-8 "
                     "(invalid bytes replaced with U+FFFD)")
    if metadata["binary_files_skipped"]:
        lines.append(f"  note:      {metadata['binary_files_skipped']} binary files skipped")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the ``data`` command alone on ``argv`` (default sys.argv); returns the exit code (2 for bad input)."""
    parser = argparse.ArgumentParser(prog="scaling")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return guarded(lambda: args.func(args), debug=debug_requested())


if __name__ == "__main__":
    sys.exit(main())
