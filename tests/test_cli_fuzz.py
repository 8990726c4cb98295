"""
Property-based tests (hypothesis) of what the command line accepts: generated values (0, negatives, huge numbers,
fractions at their edges, `nan`, `inf`, words, blanks) for every numeric option of pretrain, finetune, evaluate,
generate, train-tokenizer and explore, parsed by `build_parser()` and checked by `validate_args()`, the two steps every
command takes before any work. Nothing is trained or read. Each case is either accepted, and then the value the command
gets is the number written and lies in the option's range, or refused with one line that names the option.

The ranges below are this file's own statement of what each option means (not read from the package), so a wrong
range in the package fails here. The default profile is small and derandomized (a fixed seed: the same cases every
run); `-m slow` runs a longer one.
"""

import contextlib
import io
import math

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vaswani.cli import build_parser, validate_args
from vaswani.training.data import UsageError


PARSER = build_parser()
SEED_MAX = 2**32 - 1

BASES = {
    "pretrain": ["pretrain", "--objective", "seq2seq", "--tokenizer", "t", "--data", "d", "--output", "o"],
    "pretrain clm": ["pretrain", "--objective", "clm", "--tokenizer", "t", "--data", "d", "--output", "o"],
    "finetune": ["finetune", "--task", "seq2seq", "--tokenizer", "t", "--data", "d", "--output", "o"],
    "finetune image": ["finetune", "--task", "image-classification", "--data", "d", "--output", "o"],
    "pretrain captioning": ["pretrain", "--objective", "captioning", "--data", "d", "--output", "o"],
    "pretrain plm": ["pretrain", "--objective", "plm", "--tokenizer", "t", "--data", "d", "--output", "o"],
    "evaluate plm": ["evaluate", "--model", "m", "--task", "plm", "--data", "d"],
    "evaluate captioning": ["evaluate", "--model", "m", "--task", "captioning", "--data", "d"],
    "finetune qa": ["finetune", "--task", "question-answering", "--tokenizer", "t", "--data", "d", "--output", "o"],
    "finetune lora": ["finetune", "--task", "sequence-classification", "--model", "m", "--lora", "--data", "d",
                      "--output", "o"],
    "evaluate": ["evaluate", "--model", "m", "--task", "seq2seq", "--data", "d"],
    "evaluate clm": ["evaluate", "--model", "m", "--task", "clm", "--data", "d"],
    "evaluate qa": ["evaluate", "--model", "m", "--task", "question-answering", "--data", "d"],
    "generate": ["generate", "--model", "m", "--prompt", "To be"],
    "train-tokenizer": ["train-tokenizer", "--data", "d", "--output", "o"],
    "explore": ["explore", "m"],
}


def whole(low=None, high=None):
    """A whole number from `low` to `high` (either open)."""
    return ("int", lambda v: (low is None or v >= low) and (high is None or v <= high))


def number(accept):
    """A finite real number that `accept` takes."""
    return ("float", lambda v: math.isfinite(v) and accept(v))


def _warmup_ok(v: float) -> bool:  # a fraction of the steps, or a whole number of them
    return math.isfinite(v) and (0 <= v < 1 or (v >= 1 and v == int(v)))


POSITIVE, NONNEGATIVE = whole(1), whole(0)
FRACTION = number(lambda v: 0 <= v < 1)
TRAINING = {  # option: (range, extra arguments that make the option apply)
    "--steps": (POSITIVE, []),
    "--epochs": (number(lambda v: v > 0), []),
    "--batch-size": (POSITIVE, []),
    "--lr": (number(lambda v: v >= 0), []),
    "--warmup": (("warmup", _warmup_ok), []),
    "--weight-decay": (number(lambda v: v >= 0), []),
    "--adam-beta2": (FRACTION, []),
    "--gradient-accumulation": (POSITIVE, []),
    "--label-smoothing": (FRACTION, []),
    "--lr-scale": (number(lambda v: v >= 0), ["--paper-recipe"]),
    "--average-last": (NONNEGATIVE, ["--save-steps", "1"]),
    "--save-steps": (POSITIVE, []),
    "--eval-steps": (POSITIVE, []),
    "--logging-steps": (POSITIVE, []),
    "--seed": (whole(0, SEED_MAX), []),
    "--max-train-samples": (POSITIVE, []),
    "--max-eval-samples": (POSITIVE, []),
}
ARCHITECTURE = {
    "--d-model": (POSITIVE, ["--num-heads", "1"]),
    "--num-heads": (("int", lambda v: v >= 1 and 64 % v == 0), ["--d-model", "64"]),  # heads divide the width
    "--d-ff": (POSITIVE, []),
    "--layers": (POSITIVE, []),
    "--dropout": (FRACTION, []),
    "--max-positions": (POSITIVE, []),
    "--rope-theta": (number(lambda v: v > 0), ["--positions", "rotary"]),
    # the default shape's heads have 64 features: the rotated share must be an even number of them, at least 2
    "--partial-rotary-factor": (number(lambda v: 0 < v <= 1 and int(64 * v) >= 2 and int(64 * v) % 2 == 0),
                                ["--positions", "rotary"]),
    # buckets: at least 4, half of them below the default max distance 128; the distance: above half of 32 buckets
    "--relative-buckets": (whole(4, 255), ["--positions", "relative"]),
    "--relative-max-distance": (whole(17), ["--positions", "relative"]),
}
GENERATION = {
    "--max-new-tokens": (POSITIVE, []),
    "--num-beams": (POSITIVE, []),
    "--length-penalty": (number(lambda v: True), ["--num-beams", "2"]),
    "--temperature": (number(lambda v: v > 0), ["--do-sample"]),
    "--top-k": (POSITIVE, ["--do-sample"]),
    "--top-p": (number(lambda v: 0 < v <= 1), ["--do-sample"]),
}
CASES = {}  # (base, option) -> (range, extra)
for base in ("pretrain", "finetune"):
    CASES.update({(base, option): case for option, case in {**TRAINING, **ARCHITECTURE, **GENERATION}.items()})
    CASES[(base, "--max-length")] = (POSITIVE, [])
CASES[("pretrain clm", "--block-size")] = (POSITIVE, [])
CASES[("pretrain clm", "--validation-fraction")] = (FRACTION, [])
CASES[("pretrain clm", "--shuffle-buffer")] = (NONNEGATIVE, ["--streaming", "--steps", "5"])
CASES[("pretrain clm", "--memory-length")] = (NONNEGATIVE, ["--positions", "alibi"])  # memory needs such positions
CASES[("finetune qa", "--doc-stride")] = (whole(0, 127), [])  # below the default --max-length 128
CASES[("finetune qa", "--max-length")] = (whole(33), [])  # above the default --doc-stride 32
CASES[("finetune image", "--image-size")] = (POSITIVE, [])  # the patch side must divide it: checked when building
CASES[("finetune image", "--patch-size")] = (POSITIVE, [])
CASES[("pretrain captioning", "--image-size")] = (POSITIVE, [])
CASES[("pretrain captioning", "--patch-size")] = (POSITIVE, [])
CASES[("pretrain captioning", "--max-length")] = (POSITIVE, [])
CASES.update({("pretrain captioning", option): case for option, case in GENERATION.items()})
CASES.update({("evaluate captioning", option): case for option, case in GENERATION.items()})
for base in ("pretrain plm", "evaluate plm"):
    CASES[(base, "--plm-probability")] = (number(lambda v: 0 < v <= 1), [])
    CASES[(base, "--max-span-length")] = (POSITIVE, [])
CASES[("finetune lora", "--lora-rank")] = (POSITIVE, [])
CASES[("finetune lora", "--lora-alpha")] = (number(lambda v: v > 0), [])
CASES.update({("evaluate", option): case for option, case in GENERATION.items()})
CASES[("evaluate", "--max-eval-samples")] = (POSITIVE, [])
CASES[("evaluate", "--batch-size")] = (POSITIVE, [])
CASES[("evaluate", "--max-length")] = (POSITIVE, [])
CASES[("evaluate clm", "--block-size")] = (POSITIVE, [])
CASES[("evaluate clm", "--validation-fraction")] = (FRACTION, [])
CASES[("evaluate clm", "--memory-length")] = (NONNEGATIVE, [])
CASES[("evaluate qa", "--doc-stride")] = (whole(0, 127), [])
CASES.update({("generate", option): case for option, case in GENERATION.items()})
CASES[("generate", "--seed")] = (whole(0, SEED_MAX), [])
CASES[("train-tokenizer", "--vocab-size")] = (POSITIVE, [])
CASES[("train-tokenizer", "--max-length")] = (POSITIVE, [])
CASES[("explore", "--port")] = (whole(1, 65535), [])  # a TCP port


# -- Values as a user might type them ----------------------------------------------------------------------------------
EDGES = [0, 1, -1, 2, 32, 33, 64, 127, 128, 2**31, 2**32 - 1, 2**32, 2**63, 10**30, -(10**30)]
FLOAT_EDGES = [0.0, -0.0, 1.0, 0.5, 0.999999, 1.000001, 1e-300, -1e-9, 1.5, 100.0, 1e300, 1e400]
WORDS = ["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e400", "-1e400", "", " ", "1_000", "0x10", "abc", "1.0",
         "+5", " 7 ", "2.", ".5", "-.5", "1e-3", "-1e-3", "5e0", "1,5", "\u0661\u0662"]


def texts():
    return st.one_of(
        st.sampled_from(EDGES).map(str),
        st.integers(-(2**70), 2**70).map(str),
        st.integers(-3, 300).map(str),
        st.sampled_from(FLOAT_EDGES).map(repr),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.floats(-2, 2).map(repr),
        st.sampled_from(WORDS),
        st.text(alphabet="0123456789.-+eEnaif_x ", max_size=8),
    )


def expected(kind: str, accept, text: str):
    """(valid, value) as this file reads `text` for an option of `kind`: Python's own int() or float()."""
    try:
        value = int(text) if kind == "int" else float(text)
    except (ValueError, OverflowError):
        return False, None
    if kind == "warmup":
        return accept(value), (int(value) if math.isfinite(value) and value >= 1 else value)
    return accept(value), value


def attempt(argv: list[str]):
    """(args, None) when the command line is accepted, else (None, the one error line a user sees)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            args = PARSER.parse_args(argv)
        except SystemExit as stop:
            assert stop.code == 2, stop.code
            return None, err.getvalue()
    try:
        validate_args(args)
    except UsageError as error:
        return None, f"vaswani {args.command}: error: {error}\n"
    assert err.getvalue() == ""
    return args, None


def check_one(base: str, option: str, text: str) -> None:
    (kind, accept), extra = CASES[(base, option)]
    valid, value = expected(kind, accept, text)
    argv = [*BASES[base], *extra, option, text]
    args, line = attempt(argv)
    if args is not None:
        dest = option[2:].replace("-", "_")
        assert valid, f"{argv} was accepted, but {text!r} is outside the range of {option}"
        got = getattr(args, dest)
        assert type(got) is type(value) and got == value, (argv, got, value)
    else:
        assert not valid, f"{argv} was refused, but {text!r} is a valid {option}: {line}"
        assert line.endswith("\n") and line.count("\n") == 1, f"not one line: {line!r}"
        command = BASES[base][0]
        assert line.startswith(f"vaswani {command}: error: "), line
        assert option in line, f"the error does not name {option}: {line!r}"


FAST = settings(derandomize=True, database=None, deadline=None, max_examples=20,
                suppress_health_check=[HealthCheck.too_slow])
FAST_TOGETHER = settings(FAST, max_examples=250)
LONG = settings(derandomize=True, database=None, deadline=None, max_examples=400,
                suppress_health_check=[HealthCheck.too_slow])
IDS = [f"{base}-{option}" for base, option in CASES]


def test_every_numeric_option_of_every_command_has_a_range():
    """Every numeric option carries a range in its type (no bare int or float), and a range here: a numeric option
    added to a command without one fails."""
    commands = PARSER._subparsers._group_actions[0].choices
    covered = {(BASES[base][0], option) for base, option in CASES}
    for command in ("pretrain", "finetune", "evaluate", "generate", "train-tokenizer", "explore"):
        for action in commands[command]._actions:
            assert action.type not in (int, float), f"{command} {action.option_strings}: a number without a range"
            if hasattr(action.type, "requirement"):
                option = max(action.option_strings, key=len)
                assert (command, option) in covered, f"{command} {option} has no range in this file"


@pytest.mark.parametrize("base, option", list(CASES), ids=IDS)
@FAST
@given(text=texts())
def test_a_value_is_accepted_in_range_or_refused_naming_the_option(base, option, text):
    check_one(base, option, text)


@pytest.mark.parametrize("base, option", list(CASES), ids=IDS)
@pytest.mark.parametrize("text", ["0", "1", "-1", "0.5", "1.0", "nan", "inf", "1e400", str(2**64), "", "abc"])
def test_the_usual_suspects(base, option, text):
    check_one(base, option, text)


# -- Several options at once: the settings must also fit together ------------------------------------------------------
TOGETHER = ["--steps", "--epochs", "--save-steps", "--eval-steps", "--average-last", "--batch-size", "--lr",
            "--warmup", "--seed", "--max-new-tokens", "--num-beams", "--dropout"]


def violations(chosen: dict) -> list[set[str]]:
    """The options of each rule the chosen values break, as this file states the rules."""
    broken = []
    for option, value in chosen.items():
        (kind, accept), _ = CASES[("pretrain", option)]
        if not expected(kind, accept, value)[0]:
            broken.append({option})
    if broken:
        return broken  # a value out of range is refused while parsing, before the rules between options
    numbers = {option: expected(CASES[("pretrain", option)][0][0], lambda v: True, value)[1]
               for option, value in chosen.items()}
    steps = numbers.get("--steps")
    if "--steps" in numbers and "--epochs" in numbers:
        broken.append({"--steps", "--epochs"})
    average, save = numbers.get("--average-last", 0), numbers.get("--save-steps")
    if average > 1 and not save:
        broken.append({"--average-last", "--save-steps"})
    elif average > 1 and steps and steps // save < average:
        broken.append({"--average-last", "--save-steps", "--steps"})
    for option in ("--save-steps", "--eval-steps"):
        if option in numbers and steps and numbers[option] > steps:
            broken.append({option, "--steps"})
    return broken


def small_texts():
    return st.one_of(st.integers(-2, 12).map(str), st.sampled_from(["0.5", "1.5", "nan", "0.0", "1"]))


RULES = [  # each rule between options, broken and kept, whatever the draws bring
    {"--steps": "7", "--epochs": "7"}, {"--steps": "7"}, {"--epochs": "0.5"},
    {"--average-last": "3"}, {"--average-last": "1"},
    {"--average-last": "3", "--save-steps": "2", "--steps": "4"},
    {"--average-last": "2", "--save-steps": "2", "--steps": "4"},
    {"--save-steps": "10", "--steps": "5"}, {"--save-steps": "5", "--steps": "5"},
    {"--eval-steps": "6", "--steps": "5"}, {"--eval-steps": "5", "--steps": "5", "--save-steps": "1"},
]


def with_rules(test):
    for chosen in RULES:
        test = example(chosen=chosen)(test)
    return test


@FAST_TOGETHER
@given(chosen=st.dictionaries(st.sampled_from(TOGETHER), small_texts(), min_size=1, max_size=6))
@with_rules
def test_settings_together_are_accepted_only_when_each_fits_and_they_fit_together(chosen):
    check_together(chosen)


def check_together(chosen: dict) -> None:
    argv = list(BASES["pretrain"])
    for option, text in chosen.items():
        argv += [option, text]
    args, line = attempt(argv)
    broken = violations(chosen)
    if args is not None:
        assert not broken, f"{argv} was accepted, but it breaks {broken}"
    else:
        assert broken, f"{argv} was refused, but every value fits: {line}"
        assert line.count("\n") == 1 and line.startswith("vaswani pretrain: error: "), line
        assert any(option in line for rule in broken for option in rule), (line, broken)


# -- The longer profile ------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("base, option", list(CASES), ids=IDS)
@LONG
@given(text=texts())
def test_a_value_is_accepted_in_range_or_refused_naming_the_option_long(base, option, text):
    check_one(base, option, text)


@pytest.mark.slow
@settings(derandomize=True, database=None, deadline=None, max_examples=3000)
@given(chosen=st.dictionaries(st.sampled_from(TOGETHER), small_texts(), min_size=1, max_size=8))
def test_settings_together_long(chosen):
    check_together(chosen)
