"""Command line: ``faithscope explain | evaluate | run | results | report | list | demo``.

Bad input gets one line on stderr and exit code 2, never a traceback; Ctrl-C gets
"interrupted" and exit code 130. Cheap checks (arguments, names, output paths, the device) run
before any model is loaded. Importing this module does not import torch or transformers: they
are imported when a model is touched, so ``--help``, ``list`` and argument errors answer at once.
Every text from the data is printed verbatim (no rich markup), and files are written before
anything is printed.

Example
-------
$ faithscope list explainers
$ faithscope explain --model PATH --text "a fine film" --explainer lime --output out.json
$ faithscope explain --model tests/assets/stories260K --prompt "Tom had a dog." \
      --explainer mexgen_lshap --levels sentence phrase word --output gen.json
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .tables import FORMATS
from .units import GRANULARITIES

if TYPE_CHECKING:
    from rich.console import Console

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"faithscope: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {raw!r}") from None
        if value < low:
            word = "a positive integer" if low == 1 else f"an integer >= {low}"
            raise argparse.ArgumentTypeError(f"must be {word}, got {value}")
        return value
    parse.__name__ = "integer"
    return parse


def _budget(raw: str) -> int | str:
    """A sample budget: a positive integer, or ``auto`` (adaptive precision)."""
    return "auto" if raw == "auto" else _int_at_least(1)(raw)


_budget.__name__ = "integer or 'auto'"


def _port(raw: str) -> int:
    value = _int_at_least(1)(raw)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 1-65535, got {value}")
    return value


def _fraction(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {raw!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value:g}")
    return value


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {raw!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {raw}")
    return value


def _text(raw: str) -> str:
    if not raw.strip():
        raise argparse.ArgumentTypeError("is empty or whitespace-only")
    return raw


def _bad_bytes(argv: Sequence[str]) -> str | None:
    """The first argument holding bytes that are not UTF-8 (Python keeps them as surrogates)."""
    for arg in argv:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return arg.encode("utf-8", "backslashreplace").decode("ascii", "replace")
    return None


def _output_file(raw: str | None, what: str = "--output") -> Path | None:
    """An output file that can be written (checked before any work): not a folder, and below a
    folder or a path still to be created (missing folders are made when the file is written),
    never below an existing file."""
    if raw is None:
        return None
    path = Path(raw).expanduser()
    if path.is_dir():
        raise ValueError(f"{what} {raw}: is a directory; give a file name")
    above = path.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise ValueError(f"{what} {raw}: {str(above)!r} is a file, not a folder")
    return path


def _explanations_file(raw: str | None) -> Path | None:
    from .explanation import check_output_path

    path = _output_file(raw)
    return check_output_path(path) if path is not None else None


def _check_device(device: str | None) -> None:
    """Refuse a device this machine does not have before any model is loaded."""
    if device not in (None, "auto"):
        from .models.loading import resolve_device

        resolve_device(device)


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _explainer_specs(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    from dataclasses import fields

    from .registry import explainers

    params: dict[str, dict[str, Any]] = {}
    for item in args.param or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ValueError(f"--param must look like EXPLAINER.KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        name, field = key.split(".", 1)
        params.setdefault(name, {})[field] = _parse_value(value)
    specs = []
    for name in args.explainer:
        cls = explainers.get(name) if name in explainers else None
        p = dict(params.get(name, {}))
        known = {f.name for f in fields(cls)} if cls else set()
        for flag, field in (("n_samples", "n_samples"), ("n_steps", "n_steps")):
            value = getattr(args, flag)
            if value is not None and field in known:
                p.setdefault(field, value)
        specs.append((name, p))
    return specs


def cmd_explain(args: argparse.Namespace, console: Console) -> int:
    if args.prompt is not None:
        return _explain_prompts(args, console)
    from .api import explain, make_explainer
    from .console import literal, styled
    from .explanation import save_explanations
    from .models import load_model
    from .registry import targets
    from .render import print_explanations
    from .targets import for_classifiers

    for flag, value in (("--endpoint", args.endpoint), ("--timeout", args.timeout),
                        ("--levels", args.levels),
                        ("--top-fraction", args.top_fraction), ("--encoder", args.encoder),
                        ("--max-new-tokens", args.max_new_tokens), ("--foil", args.foil),
                        ("--per-token", args.per_token or None)):
        if value is not None:
            raise ValueError(f"{flag} is for explaining a generative model (--prompt)")
    if not args.explainer:
        raise ValueError("the following arguments are required: --explainer")
    specs = _explainer_specs(args)
    instances = [make_explainer(s) for s in specs]  # validate before loading the model
    target_fn = args.target_fn or "prob"
    if target_fn not in targets:
        raise ValueError(targets.unknown_message(target_fn))
    if not for_classifiers(target_fn):
        raise ValueError(f"--target-fn {target_fn} is a target of generated text (--prompt)")
    output = _explanations_file(args.output)
    _check_device(args.device)
    target: Any = args.target
    if target not in (None, "predicted", "all"):
        target = int(target) if target.lstrip("-").isdigit() else target
    model = load_model(args.model, num_labels=args.num_labels, device=args.device,
                       dtype=args.dtype, max_batch_size=args.max_batch_size,
                       device_map=args.device_map, quantization=args.quantization,
                       trust_remote_code=args.trust_remote_code)
    inp: Any = (args.text, args.pair) if args.pair is not None else args.text
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exps = explain(model, [inp], instances, granularity=args.granularity, target=target,
                       target_fn=target_fn, seed=args.seed, strict=args.strict)
    if output is not None:  # the file first: printing can never lose the results
        path = save_explanations(exps, output)
    for w in caught:
        console.print(styled(("warning: ", "yellow"), str(w.message)))
    print_explanations(exps, console)
    if output is not None:
        console.print(literal(f"wrote {len(exps)} explanations to {path}"))
    return 0


def _explain_prompts(args: argparse.Namespace, console: Console) -> int:
    """``explain --prompt``: a generative model's output, units at ``--levels`` (MExGen)."""
    from .api import explain, make_explainer
    from .console import literal, styled
    from .errors import InputError
    from .explanation import save_explanations
    from .registry import targets
    from .render import print_explanations
    from .segment import LEVELS
    from .targets import for_generation

    # every check here runs before the model is loaded
    for flag, value in (("--pair", args.pair), ("--target", args.target),
                        ("--num-labels", args.num_labels)):
        if value is not None:
            raise InputError(f"{flag} is for explaining a classifier (--text)")
    levels = tuple(args.levels or ("sentence", "phrase", "word"))
    if any(lv not in LEVELS for lv in levels) or list(levels) != sorted(levels, key=LEVELS.index):
        raise InputError(f"--levels must be coarse-to-fine names among {', '.join(LEVELS)}, "
                         f"got {' '.join(levels)}")
    if not args.explainer:
        args.explainer = ["mexgen_clime"]
    instances = [make_explainer(s) for s in _explainer_specs(args)]
    target_fn = args.target_fn or "log_prob"
    if target_fn not in targets:
        raise InputError(targets.unknown_message(target_fn))
    if not for_generation(target_fn):
        raise InputError(f"--target-fn {target_fn} is a target of classifiers (--text); "
                         "`faithscope list targets` marks those of generated text")
    output = _explanations_file(args.output)
    if args.timeout is not None and not args.endpoint:
        raise InputError("--timeout is for a model behind --endpoint")
    if args.encoder and target_fn not in ("cosine", "bertscore"):
        raise InputError("--encoder is used only with --target-fn cosine or bertscore")
    if target_fn in ("cosine", "bertscore") and not args.encoder:
        raise InputError(f"--target-fn {target_fn} needs --encoder (a local encoder path)")
    if (args.foil is not None) != (target_fn == "contrast"):
        raise InputError("--foil (the alternative output) goes with --target-fn contrast"
                         if args.foil is not None else
                         "--target-fn contrast needs --foil (the alternative output text)")
    if args.per_token and target_fn not in ("log_prob", "contrast"):
        raise InputError("--per-token goes with --target-fn log_prob or contrast")
    max_new = args.max_new_tokens or 32
    if args.endpoint:
        from .models.http import HTTPAdapter

        lm: Any = HTTPAdapter(args.endpoint, model=args.model, max_new_tokens=max_new,
                              **({"timeout": args.timeout} if args.timeout else {}))
    else:
        from .models.generative import load_generative

        _check_device(args.device)
        lm = load_generative(args.model, max_new_tokens=max_new,
                             device=None if args.device == "auto" else args.device,
                             dtype=args.dtype, max_batch_size=args.max_batch_size,
                             device_map=args.device_map, quantization=args.quantization,
                             trust_remote_code=args.trust_remote_code)
    target: Any = target_fn
    if target_fn in ("cosine", "bertscore"):
        from .models.encoders import TextEncoder

        target = (target_fn, {"encoder": TextEncoder.load(args.encoder)})
    elif target_fn in ("log_prob", "contrast") and (args.per_token or args.foil is not None):
        target = (target_fn, {"per_token": bool(args.per_token),
                              **({"foil": args.foil} if args.foil is not None else {})})
    exps = explain(lm, list(args.prompt), instances, target_fn=target, levels=levels,
                   top_fraction=args.top_fraction or 0.3, seed=args.seed)
    if output is not None:  # the file first: printing can never lose the results
        save_explanations(exps, output)
    for e in exps:
        console.print(styled(("output: ", "bold"), f"{e.output!r} · "
                             f"{e.info['queries']} model queries"))
    print_explanations(exps, console)
    if output is not None:
        console.print(literal(f"wrote {len(exps)} explanations to {output}"))
    return 0


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    from . import registry

    if args.what == "presets":
        from .studies import preset_names

        for name in preset_names():
            print(name)
        return 0
    if args.what == "analyses":
        import faithscope.studies.analyses  # noqa: F401  (registers the study analyses)

    regs: dict[str, registry.Registry[Any]] = {
        "explainers": registry.explainers, "targets": registry.targets,
        "metrics": registry.metrics, "datasets": registry.datasets,
        "analyses": registry.study_analyses}
    if args.what == "targets":
        from .targets import for_classifiers, for_generation

        for name in registry.targets.names():  # targets of generated text are marked
            gen, clf = for_generation(name), for_classifiers(name)
            print(f"{name} (classifiers, generation)" if gen and clf else
                  f"{name} (generation)" if gen else name)
        return 0
    reg = regs[args.what]
    for name in reg.names():
        print(name)
    return 0


def cmd_serve(args: argparse.Namespace, console: Console) -> int:
    from .console import literal
    from .models.generative import load_generative
    from .models.server import serve

    _check_device(args.device)
    lm = load_generative(args.model, device=None if args.device == "auto" else args.device,
                         max_new_tokens=args.max_new_tokens)
    console.print(literal(f"serving {args.model} at http://{args.host}:{args.port}/v1 "
                          "(OpenAI-compatible: /models, /completions, /chat/completions)"))
    try:
        serve(lm, host=args.host, port=args.port, name=args.name, block=True)
    except OSError as err:  # port in use, no permission, unknown host
        raise ValueError(f"cannot serve on {args.host}:{args.port}: "
                         f"{err.strerror or err}") from None
    return 0


def cmd_evaluate(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from .api import explain, make_explainer
    from .console import literal
    from .evaluate import evaluate, summarize
    from .explainers.base import OPERATORS
    from .explanation import save_explanations
    from .metrics import get_metric
    from .models import load_model
    from .registry import datasets
    from .tables import format_summary, metric_table

    if args.mask not in OPERATORS:
        raise ValueError(f"--mask must be one of {', '.join(OPERATORS)}, got {args.mask!r}")
    if args.output and Path(args.output).is_file():
        raise ValueError(f"--output {args.output}: is a file; give a folder for the results")
    _check_device(args.device)
    names = list(dict.fromkeys([*args.explainers, "random"]))
    exps_specs = [make_explainer(n) for n in names]
    metric_objs = [get_metric(m) for m in args.metrics]
    loader = datasets.get(args.dataset) if args.dataset in datasets else None
    if loader is None:
        raise ValueError(datasets.unknown_message(args.dataset))
    kw: dict[str, Any] = {"split": args.split, "n": args.n, "skip_bad": args.skip_bad,
                          "seed": args.seed}
    if args.data_path:
        kw["path"] = args.data_path
    data: Any = loader(**kw)
    model = load_model(args.model, device=args.device, dtype=args.dtype,
                       max_batch_size=args.max_batch_size,
                       labels=tuple(data.labels) if args.new_head else None)
    exps = explain(model, list(data.examples), exps_specs, granularity=args.granularity,
                   seed=args.seed)
    df = evaluate(exps, model, metric_objs, examples=data.examples, operator=args.mask,
                  random=True, seed=args.seed)
    summary = summarize(df, n_boot=args.n_boot, seed=args.seed)
    if args.output:  # files first: printing can never lose the results
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        save_explanations(exps, out / "explanations.parquet")
        tidy = df.assign(detail=df["detail"].map(json.dumps))
        tidy.to_parquet(out / "metrics.parquet", index=False)
        summary.to_csv(out / "summary.csv", index=False)
    if args.format == "table":
        title = (f"{args.dataset}/{args.split}: {len(data.examples)} examples, model "
                 f"{model.model_id} (mean ± 95% CI; bold = best; random = chance)")
        console.print(literal(title))  # its own line: never wrapped to the table's width
        console.print(metric_table(summary))
    else:
        sys.stdout.write(format_summary(summary, args.format))
    if args.output:
        print(f"wrote {out}/explanations.parquet, metrics.parquet, summary.csv",
              file=sys.stderr if args.format != "table" else sys.stdout)
    return 0


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from .console import literal
    from .studies import apply_overrides, load_preset, load_spec, run_study
    from .studies.results import open_study, print_results

    if bool(args.spec) == bool(args.preset):
        raise ValueError("give a study spec file or --preset NAME (not both)")
    spec = load_preset(args.preset) if args.preset else load_spec(args.spec)
    if args.set:
        spec = apply_overrides(spec, args.set)
    _check_device(args.device)
    out = args.out or str(Path("studies") / spec.name)
    if "://" not in out and Path(out).is_file():
        raise ValueError(f"--out {out}: is a file; give a study directory")
    run_study(spec, out, executor=args.executor, address=args.address,
              max_examples=args.max_examples, console=console, device=args.device)
    print_results(open_study(out), console)
    console.print(literal(f"study directory: {out}"))
    return 0


def cmd_results(args: argparse.Namespace, console: Console) -> int:
    from .console import literal
    from .studies.results import export, open_study, print_results
    from .tables import format_summary

    if args.output and not args.export:
        raise ValueError("--output is the file of --export (csv or parquet)")
    path = _output_file(args.output or (f"metrics.{args.export}" if args.export else None))
    study = open_study(args.study)
    if args.sql:
        import pandas as pd

        with pd.option_context("display.max_rows", 200, "display.width", 200):
            print(study.sql(args.sql).to_string(index=False))
    elif args.export:
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        console.print(literal(f"wrote {export(study, args.export, str(path))}"))
    elif args.format != "table":
        sys.stdout.write(format_summary(study.summary(), args.format))
    else:
        print_results(study, console)
    return 0


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from .console import literal
    from .models import InputError
    from .report import write_report
    from .studies.results import open_study

    if "://" not in args.study and not (Path(args.study) / "manifest.json").is_file():
        raise InputError(f"{args.study}: not a study directory (no manifest.json)")
    _output_file(args.output, "-o")
    study = open_study(args.study)
    study.check()  # a corrupt shard is named before any figure is drawn
    try:
        path = write_report(study, args.output, figures_dir=args.figures)
    except OSError as err:  # unwritable output or figure folder
        raise InputError(f"cannot write the report: {err}") from None
    console.print(literal(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)"))
    if args.figures:
        console.print(literal(f"figures (PNG and SVG) in {args.figures}"))
    return 0


def cmd_audit(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from .audits import audit

    if args.out and Path(args.out).is_file():
        raise ValueError(f"--out {args.out}: is a file; give a folder for the audit")
    _check_device(args.device)
    params: dict[str, Any] = {"path": args.data_path} if args.data_path else {}
    result = audit(args.model, args.data, split=args.split, n=args.n,
                   explainers=args.explainers, budget=args.budget, planted=args.planted,
                   train_split=args.train_split, rank_by=args.rank_by, out=args.out,
                   data_params=params, device=args.device, seed=args.seed,
                   max_length=args.max_length, console=console)
    if args.out:
        console.print(f"wrote {args.out}/audit.json and {args.out}/audit.html", highlight=False)
    else:
        console.print(f"(audit study cached in {result.study_dir}; --out DIR writes audit.json "
                      "and audit.html)", highlight=False)
    return 0


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from .demo import run_demo

    run_demo(n_examples=args.n_examples, n_show=args.n_show, n_train=args.n_train,
             console=console, encoder=args.encoder, full=args.full)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="faithscope", description="Explain language models and measure how far "
                "the explanations can be trusted.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    e = sub.add_parser("explain", help="explain one text (or text pair) of a classifier, or "
                       "the generated output of prompts (--prompt: MExGen, multi-level)")
    e.add_argument("--model", required=True, help="hub id or local path of a classifier, or "
                   "of a generative LM with --prompt (or its model name at --endpoint)")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", type=_text, help="text to classify and explain")
    src.add_argument("--prompt", action="append", type=_text,
                     help="prompt of a generative LM whose output is explained (repeatable)")
    e.add_argument("--pair", type=_text, help="second text of a pair (e.g. NLI hypothesis)")
    e.add_argument("--explainer", action="append",
                   help="registered explainer name (repeat for several; required with --text, "
                   "default mexgen_clime with --prompt)")
    e.add_argument("--param", action="append", metavar="EXPLAINER.KEY=VALUE",
                   help="hyper-parameter, e.g. lime.n_samples=500 (repeatable)")
    e.add_argument("--n-samples", type=_budget,
                   help="n_samples for explainers that have it: an integer, or 'auto' (sample "
                        "in rounds until the ranking is resolved)")
    e.add_argument("--n-steps", type=_int_at_least(1), help="n_steps for explainers that have it")
    e.add_argument("--granularity", choices=GRANULARITIES, default="word")
    e.add_argument("--target", default=None, help="predicted (default), all, index or label")
    e.add_argument("--target-fn", default=None,
                   help="prob (default), logit, log_prob or contrast; with --prompt a target of "
                   "generated text: log_prob (default, local models), log_prob_per_token, "
                   "cosine or bertscore (see `faithscope list targets`)")
    e.add_argument("--num-labels", type=_int_at_least(1), default=None,
                   help="new head size when the checkpoint has no classification head")
    e.add_argument("--endpoint", help="--prompt: OpenAI-compatible base URL "
                   "(e.g. http://host:8000/v1)")
    e.add_argument("--timeout", type=_seconds, default=None,
                   help="--endpoint: seconds to wait for each answer (default 120; a request "
                   "that times out is retried twice)")
    e.add_argument("--levels", nargs="+", default=None,
                   help="--prompt: coarse-to-fine unit levels (default sentence phrase word)")
    e.add_argument("--top-fraction", type=_fraction, default=None,
                   help="--prompt: share of units refined at each finer level, in (0, 1] "
                   "(default 0.3)")
    e.add_argument("--encoder", help="--prompt: local encoder for cosine / bertscore")
    e.add_argument("--foil", type=_text, help="--prompt with --target-fn contrast: the "
                   "alternative output (why the model's output rather than this one)")
    e.add_argument("--per-token", action="store_true", help="--prompt: one row per generated "
                   "token (log_prob or contrast): a generated-token x prompt-unit matrix")
    e.add_argument("--max-new-tokens", type=_int_at_least(1), default=None,
                   help="--prompt: tokens generated per prompt (default 32)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="auto")
    e.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    e.add_argument("--device-map", default=None, help="'auto': spread a large model over the "
                   "GPUs (accelerate)")
    e.add_argument("--quantization", default=None, choices=("8bit", "4bit"),
                   help="8-bit / 4-bit weights (bitsandbytes, a CUDA GPU)")
    e.add_argument("--trust-remote-code", action="store_true",
                   help="run the model repository's own code (refused unless given)")
    e.add_argument("--max-batch-size", type=_int_at_least(1), default=None,
                   help="rows per model call (default: from the device and the model size)")
    e.add_argument("--strict", action="store_true", help="refuse texts longer than the model")
    e.add_argument("--output", help="write explanations (.json/.jsonl/.parquet)")
    e.set_defaults(func=cmd_explain)
    sv = sub.add_parser("serve", help="serve a local generative model (OpenAI-compatible API)")
    sv.add_argument("--model", required=True, help="causal or seq2seq LM: local path or hub id")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=_port, default=8000)
    sv.add_argument("--name", default=None, help="model name reported by /v1/models")
    sv.add_argument("--max-new-tokens", type=_int_at_least(1), default=64)
    sv.add_argument("--device", default="auto")
    sv.set_defaults(func=cmd_serve)
    ls = sub.add_parser("list", help="list registered names")
    ls.add_argument("what", choices=("explainers", "targets", "metrics", "datasets", "analyses",
                                            "presets"))
    ls.set_defaults(func=cmd_list)
    ev = sub.add_parser("evaluate", help="explain a dataset and score the explanations")
    ev.add_argument("--model", required=True)
    ev.add_argument("--dataset", required=True, help="registered dataset name")
    ev.add_argument("--data-path", help="file or folder of the dataset")
    ev.add_argument("--split", default="dev")
    ev.add_argument("--n", type=_int_at_least(1), default=None, help="number of examples")
    ev.add_argument("--explainers", nargs="+", default=["integrated_gradients", "lime"])
    ev.add_argument("--metrics", nargs="+", default=["aopc_comprehensiveness",
                    "aopc_sufficiency", "flip_rate"])
    ev.add_argument("--granularity", choices=GRANULARITIES, default="word")
    ev.add_argument("--mask", default="delete", help="operator of removal metrics: delete "
                    "(default, as ERASER and ferret), mask, pad or unk")
    ev.add_argument("--n-boot", type=_int_at_least(1), default=1000,
                    help="bootstrap resamples of the 95%% CI")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--skip-bad", action="store_true", help="skip malformed rows (counted)")
    ev.add_argument("--new-head", action="store_true",
                    help="the checkpoint has no head: add one sized to the dataset's labels")
    ev.add_argument("--device", default="auto")
    ev.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    ev.add_argument("--max-batch-size", type=_int_at_least(1), default=None,
                    help="rows per model call (default: from the device and the model size)")
    ev.add_argument("--format", choices=FORMATS, default="table",
                    help="how the summary is printed (csv, json, markdown: to stdout)")
    ev.add_argument("--output", help="directory for explanations, tidy metrics and summary")
    ev.set_defaults(func=cmd_evaluate)
    r = sub.add_parser("run", help="run or resume a study (YAML spec or --preset)")
    r.add_argument("spec", nargs="?", help="study spec (YAML)")
    r.add_argument("--preset", help="a shipped preset: scaling, architectures, seeds, generation")
    r.add_argument("--out", help="study directory or fsspec URL (default studies/NAME)")
    r.add_argument("--executor", choices=("local", "ray"), default="local")
    r.add_argument("--address", help="Ray cluster address (default: start a local one)")
    r.add_argument("--max-examples", type=_int_at_least(1),
                   help="cap every dataset's evaluation examples")
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override the spec, e.g. recipe.epochs=2 or datasets.n=50")
    r.add_argument("--device", default=None, help="auto, cpu or cuda (default: the spec's)")
    r.set_defaults(func=cmd_run)
    rs = sub.add_parser("results", help="tables, SQL queries or exports of a study")
    rs.add_argument("study", help="study directory or fsspec URL")
    rs.add_argument("--sql", help="DuckDB query over the views metrics, models, units")
    rs.add_argument("--export", choices=("csv", "parquet"), help="export the metric rows")
    rs.add_argument("--output", help="file for --export")
    rs.add_argument("--format", choices=FORMATS, default="table",
                    help="the metric summary as a table, or csv / json / markdown on stdout")
    rs.set_defaults(func=cmd_results)
    rp = sub.add_parser("report", help="a self-contained interactive HTML report of a study")
    rp.add_argument("study", help="study directory or fsspec URL")
    rp.add_argument("-o", "--output", default="report.html", help="HTML file (default "
                    "report.html)")
    rp.add_argument("--figures", metavar="DIR", help="also export every figure as PNG and SVG")
    rp.set_defaults(func=cmd_report)
    a = sub.add_parser("audit", help="which explainer to trust on this model, and why: every "
                       "applicable explainer measured and judged by a stated rule")
    a.add_argument("--model", required=True, help="fine-tuned classifier or generative LM "
                   "(local folder, pkg: path or hub id)")
    a.add_argument("--data", required=True, help="registered dataset name or a data file")
    a.add_argument("--data-path", help="file or folder of the dataset (default: "
                   "$FAITHSCOPE_DATA)")
    a.add_argument("--split", default="dev")
    a.add_argument("--n", type=_int_at_least(1), default=None,
                   help="examples audited (default: the budget's)")
    a.add_argument("--explainers", nargs="+", default=None,
                   help="default: every explainer that applies to the model")
    a.add_argument("--budget", choices=("fast", "standard", "thorough"), default="fast")
    a.add_argument("--planted", action="store_true", help="also fine-tune a copy on the data "
                   "with a planted label word and check which explainers find it")
    a.add_argument("--train-split", default="train", help="training split of --planted")
    a.add_argument("--rank-by", default="aopc_comprehensiveness",
                   help="metric that ranks the explainers that pass the gates")
    a.add_argument("--out", help="folder for the audit (study, audit.json, audit.html); "
                   "rerunning with the same --out resumes")
    a.add_argument("--device", default="auto")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--max-length", type=_int_at_least(8), default=128)
    a.set_defaults(func=cmd_audit)
    d = sub.add_parser("demo", help="offline demo: a small study (fine-tune MiniLM on SST-2, explain, evaluate)")
    d.add_argument("--n-examples", type=_int_at_least(1), default=10,
                   help="dev sentences explained")
    d.add_argument("--n-show", type=_int_at_least(0), default=3, help="heatmaps printed")
    d.add_argument("--n-train", type=_int_at_least(2), default=None,
                   help="training sentences (default 1500)")
    d.add_argument("--full", action="store_true",
                   help="every registered explainer with its default settings (about 8 min on "
                   "a 2-core CPU); default: a quick representative set")
    d.add_argument("--encoder", default=None, help="encoder checkpoint (default: MiniLM-L6)")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from .data.readers import DataError
    from .errors import InputError

    argv = list(sys.argv[1:] if argv is None else argv)
    bad = _bad_bytes(argv)
    if bad is not None:
        print(f"faithscope: error: argument {bad!r} is not valid UTF-8 text", file=sys.stderr)
        return EXIT_USAGE
    args = build_parser().parse_args(argv)
    if args.command == "list":  # plain names, one per line: no console needed
        console: Any = None
    else:
        from .console import make_console

        console = make_console()
    try:
        return int(args.func(args, console))
    except KeyboardInterrupt:
        print("faithscope: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (InputError, DataError, ValueError, KeyError, FileNotFoundError) as err:
        print(f"faithscope: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:  # unwritable output, disk full, permission denied
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        print(f"faithscope: error: {where}{err.strerror or _one_line(err)}", file=sys.stderr)
        return EXIT_USAGE


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
