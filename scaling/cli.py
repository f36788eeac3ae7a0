"""The ``scaling`` console command: one front door for data, training, accounting and analysis."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap

from scaling import cli_help


def _load_config(spec: str | None, overrides: list[str]):
    """A YAML file, or the name of a model preset (``scaling params gpt2-xl``)."""
    from scaling import config, presets

    if spec is not None and spec in presets.PRESETS:
        return config.load(None, [f"model.preset={spec}", *overrides])
    return config.load(spec, overrides)


def _cmd_params(args) -> int:
    from scaling import accounting, planning

    cfg, _ = planning.resolve_vocab(_load_config(args.config, args.overrides), prepare=False)
    acct = accounting.count(cfg.model)
    if args.json:
        print(json.dumps(acct.as_dict(), indent=2))
    else:
        m = cfg.model
        print(f"shape: {m.n_layer} layers, d_model {m.d_model}, {m.n_head} heads of {m.head_dim}, "
              f"d_ff {m.ff_dim}, vocab {m.vocab_size}, seq {m.seq_len}")
        print(f"parameters: {acct.n_params:,} total, {acct.n_params_embedding:,} embedding, "
              f"{acct.n_params_non_embedding:,} non-embedding")
        print(f"training FLOPs per token: {acct.flops_per_token:.4g} exact, {acct.flops_per_token_6n:.4g} as 6N "
              f"(ratio {acct.flops_per_token / acct.flops_per_token_6n:.3f})")
    return 0


def _cmd_train(args) -> int:
    from analysis import run_format as rf
    from scaling import train

    cfg = _load_config(args.config, args.overrides)
    result = train.run(cfg)
    print(f"run {result[rf.RUN_ID]} {result[rf.STATUS]}: final eval loss {result.get(rf.FINAL_EVAL_LOSS)}")
    return 0


def _cmd_quickstart(args) -> int:
    from scaling import quickstart

    return quickstart.main(args)


def _config_args(p: argparse.ArgumentParser) -> None:
    """CONFIG and the optional key=value overrides shared by ``params`` and ``train``."""
    from scaling import presets

    p.add_argument("config", metavar="CONFIG",
                   help=f"a YAML config file (e.g. scaling/configs/tiny.yaml) or a model preset name: "
                        f"{', '.join(sorted(presets.PRESETS))}")
    p.add_argument("overrides", nargs="*", default=[], metavar="key=value",
                   help="optional config overrides, e.g. model.d_model=256 train.tokens=5e6; "
                        "key=null unsets a key the config file sets")


def build_parser() -> argparse.ArgumentParser:
    """The full ``scaling`` argument parser: params, train, quickstart, plus the data, sweep and analysis groups.

    Each subcommand sets ``func`` (called with the parsed args, returning an exit code).
    """
    from analysis import cli as analysis_cli
    from scaling import config
    from scaling.data import cli as data_cli
    from scaling.sweeps import cli as sweep_cli

    parser = argparse.ArgumentParser(
        prog="scaling", formatter_class=cli_help.HelpFormatter,
        description="Train ladders of GPT-style models in JAX/Flax and fit the scaling laws they trace.\n"
                    "Every command has its own --help, e.g. scaling train --help.",
        epilog=cli_help.examples("scaling quickstart", "scaling params gpt3-175b",
                                 "scaling train scaling/configs/tiny.yaml train.tokens=1e6",
                                 "scaling sweep plan sweeps/quickstart.yaml"))
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also: SCALING_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = cli_help.command(sub, "params", "print parameter and FLOP counts of a config or preset; trains nothing",
                         "scaling params gpt3-175b", "scaling params scaling/configs/tiny.yaml model.d_model=512 --json")
    _config_args(p)
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.set_defaults(func=_cmd_params)

    keys = textwrap.fill("valid keys: " + ", ".join(config.valid_keys()), width=100, subsequent_indent="  ")
    p = cli_help.command(sub, "train", "train one run, or resume it from its newest checkpoint",
                         "scaling train scaling/configs/tiny.yaml train.tokens=1e6",
                         description="Train one run, or resume it from its newest good checkpoint: the same "
                                     "command again continues where it stopped.\nSet exactly one budget: "
                                     "train.tokens, train.flops or train.steps.\n\n" + keys)
    _config_args(p)
    p.set_defaults(func=_cmd_train)

    p = cli_help.command(sub, "quickstart", "run the tiny IsoFLOP sweep sweeps/quickstart.yaml on the embedded "
                                            "corpus, then fit and plot it", "scaling quickstart")
    p.add_argument("--runs-dir", default="runs", metavar="DIR", help="where run directories go")
    p.set_defaults(func=_cmd_quickstart)

    data_cli.register(sub)
    sweep_cli.register(sub)
    analysis_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Every command runs through one handler: an expected failure is one ``error:`` line (scaling.errors)."""
    from scaling import errors

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    for noisy in ("absl", "jax._src", "orbax"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not args.verbose:
        # orbax logs a failed background save with tracebacks (and asyncio its unretrieved futures),
        # then raises it to the trainer, which reports it as the one error line.
        for handler in logging.getLogger().handlers:
            handler.addFilter(lambda r: not (r.name.split(".")[0] in ("absl", "orbax", "asyncio")
                                             and r.levelno >= logging.ERROR))
    return errors.guarded(lambda: args.func(args), debug=args.debug or errors.debug_requested())


if __name__ == "__main__":
    sys.exit(main())
