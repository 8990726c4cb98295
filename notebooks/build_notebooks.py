"""
Write, and optionally execute, the tutorial notebooks in this folder. The cells are the Python strings below, so a
change to a notebook is a change to this file; the committed `.ipynb` files carry the outputs of a real full run.

    python notebooks/build_notebooks.py                      # write the .ipynb files (no outputs)    
    python notebooks/build_notebooks.py --execute            # write and run them (full setting), keeping outputs
    python notebooks/build_notebooks.py --execute --only 03  # just one (names or number prefixes)
    python notebooks/build_notebooks.py --execute --fast     # the quick setting; written to outputs/notebooks-fast/

Every notebook reads `VASWANI_NOTEBOOK_FAST=1` (far fewer steps, for the test suite) and writes its model folders
under `VASWANI_NOTEBOOK_OUTPUT` (default `outputs/notebooks/`, which git ignores), never into this folder.
"""

import argparse
import os
import sys
import textwrap
import time
from pathlib import Path

import nbformat


NOTEBOOK_DIR = Path(__file__).resolve().parent
ROOT = NOTEBOOK_DIR.parent
KERNEL = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def md(text: str):
    return nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip())


def code(text: str):
    return nbformat.v4.new_code_cell(textwrap.dedent(text).strip())


def setup_cell(name: str, offline: bool = True):
    """The first code cell of every notebook: the FAST switch, quiet libraries, and where outputs go."""
    offline_lines = (
        'os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local: no network needed\n'
        'os.environ.setdefault("HF_DATASETS_OFFLINE", "1")\n'
        if offline
        else ""
    )
    return code(
        f'''
import os
import time
import warnings
from pathlib import Path

FAST = os.environ.get("VASWANI_NOTEBOOK_FAST") == "1"  # a smoke run with far fewer steps (the test suite sets it)
{offline_lines}os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets: text bars are fine

import datasets
import torch
import transformers

import vaswani  # registers the Vaswani family with the Auto classes and pipelines

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()
datasets.disable_progress_bars()
transformers.set_seed(0)
STARTED = time.perf_counter()


def repository_root() -> Path:
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "vaswani").is_dir() and (folder / "pyproject.toml").is_file():
            return folder
    return Path.cwd()


# Model folders go to outputs/notebooks/ (git-ignored), never next to the notebooks.
OUT = Path(os.environ.get("VASWANI_NOTEBOOK_OUTPUT") or repository_root() / "outputs" / "notebooks") / "{name}"
OUT.mkdir(parents=True, exist_ok=True)
print(f"FAST = {{FAST}}; torch {{torch.__version__}}, transformers {{transformers.__version__}}, "
      f"vaswani {{vaswani.__version__}}, {{torch.get_num_threads()}} CPU threads")
print("outputs go to", os.path.relpath(OUT))
'''
    )


def closing_cell():
    return code(
        """
        print(f"This notebook ran in {time.perf_counter() - STARTED:.0f} s (FAST = {FAST}).")
        """
    )


# ======================================================================================================================
# 01 Quickstart
# ======================================================================================================================
def quickstart():
    return [
        md(
            """
            # 01 · Quickstart: the Transformer as a Hugging Face model family

            The `vaswani` package implements the model of *Attention Is All You Need* (Vaswani et al., 2017) as a
            regular Hugging Face model. This notebook is a tour of the API, with tiny **untrained** models so that
            every cell runs in a moment:

            1. one `VaswaniConfig`, three shapes: encoder-decoder (the paper), encoder-only (BERT-style),
               decoder-only (GPT-style), and the presets;
            2. the Auto classes (`AutoConfig`, `AutoModel`, `AutoModelForCausalLM`, ...);
            3. saving and loading a model folder;
            4. `generate()`;
            5. `pipeline()`: text generation, fill-mask, feature extraction and the package's own
               `vaswani-text2text`.

            Because the weights are random, the words the models write are random too: the point here is the
            API. Notebooks 02 to 04 train real models.
            """
        ),
        setup_cell("01_quickstart"),
        md(
            """
            ## 1. One config, three shapes

            `VaswaniConfig` speaks the paper's language: `d_model`, `num_heads` (h), `d_ff`, `num_encoder_layers`
            and `num_decoder_layers` (N), `dropout` (P_drop). (Label smoothing ε_ls is a training setting, not part
            of the model: see notebook 04.) Five presets name famous sizes: the paper's base and big models
            (Table 3), the shapes of BERT-base and GPT-2 small, and `vaswani-small`, the command line's default.
            Building them on PyTorch's `meta` device counts their parameters without allocating any memory.
            """
        ),
        code(
            """
            from vaswani import (PRESETS, VaswaniConfig, VaswaniForCausalLM, VaswaniForConditionalGeneration,
                                 VaswaniForMaskedLM, VaswaniModel)

            HEAD_FOR_STACKS = {"encoder-decoder": VaswaniForConditionalGeneration,
                               "encoder-only": VaswaniForMaskedLM, "decoder-only": VaswaniForCausalLM}
            for name in PRESETS:
                preset = VaswaniConfig.from_preset(name)
                with torch.device("meta"):  # shapes only, no memory
                    model = HEAD_FOR_STACKS[preset.stacks](preset)
                print(f"{name:17s} {preset.stacks:16s} layers {preset.num_encoder_layers}+{preset.num_decoder_layers:<2d} "
                      f"d_model {preset.d_model:4d}  h {preset.num_heads:2d}  d_ff {preset.d_ff:4d}  "
                      f"vocab {preset.vocab_size:6,d}  -> {sum(p.numel() for p in model.parameters()) / 1e6:6.1f}M parameters")
            """
        ),
        md(
            """
            For the rest of the notebook a tiny config will do. One config serves every head: each head copies it
            and keeps the stacks it needs (`config.stacks`), so the same object builds the paper's encoder-decoder,
            a BERT-style encoder and a GPT-style decoder. Its positions are the paper's sinusoids (3.5), the
            default `position_embedding_type="sinusoidal"`; the other kinds are `"learned"`, `"rotary"`, `"alibi"`
            and `"relative"` (T5's bias).
            """
        ),
        code(
            """
            config = VaswaniConfig(vocab_size=1000, d_model=64, num_heads=4, d_ff=256, num_hidden_layers=2,
                                   max_position_embeddings=128)
            seq2seq = VaswaniForConditionalGeneration(config).eval()
            bert_like = VaswaniForMaskedLM(config).eval()
            gpt_like = VaswaniForCausalLM(config).eval()

            ids = torch.randint(3, config.vocab_size, (2, 10))  # a batch of 2 sequences of 10 token ids
            with torch.no_grad():
                outputs = {
                    "encoder-decoder": seq2seq(input_ids=ids, decoder_input_ids=ids[:, :6]).logits,
                    "encoder-only": bert_like(input_ids=ids).logits,
                    "decoder-only": gpt_like(input_ids=ids).logits,
                }
            for model, (shape, logits) in zip((seq2seq, bert_like, gpt_like), outputs.items()):
                body = model.model
                print(f"{type(model).__name__:32s} stacks={model.config.stacks:16s} encoder={body.encoder is not None!s:5s} "
                      f"decoder={body.decoder is not None!s:5s} {sum(p.numel() for p in model.parameters()):7,d} parameters, "
                      f"logits {tuple(logits.shape)}")
            print("the config we passed is untouched:", config.stacks)
            """
        ),
        md(
            """
            The encoder-decoder's logits have the *target* length (6): one next-token distribution per decoder
            position. The bare body is `VaswaniModel`; `config.with_stacks(...)` gives a copy of the config for a
            chosen shape.
            """
        ),
        code(
            """
            body = VaswaniModel(config.with_stacks("encoder-only")).eval()
            with torch.no_grad():
                hidden = body(input_ids=ids).last_hidden_state
            print(type(body).__name__, "last_hidden_state", tuple(hidden.shape), "(batch, tokens, d_model)")
            """
        ),
        md(
            """
            ## 2. The Auto classes

            `import vaswani` registers the config and every head with the Auto classes, so code written for any
            Hugging Face model works unchanged: `AutoConfig.for_model("vaswani", ...)` builds a config and each
            Auto class picks the matching head.
            """
        ),
        code(
            """
            from transformers import (AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM,
                                      AutoModelForQuestionAnswering, AutoModelForSeq2SeqLM,
                                      AutoModelForSequenceClassification)

            auto_config = AutoConfig.for_model("vaswani", vocab_size=1000, d_model=64, num_heads=4, d_ff=256,
                                               num_hidden_layers=2)
            print(type(auto_config).__name__, "model_type =", auto_config.model_type)
            for auto in (AutoModelForSeq2SeqLM, AutoModelForCausalLM, AutoModelForMaskedLM,
                         AutoModelForSequenceClassification, AutoModelForQuestionAnswering, AutoModel):
                model = auto.from_config(auto_config)
                print(f"{auto.__name__:36s} -> {type(model).__name__:34s} stacks = {model.config.stacks}")
            """
        ),
        md(
            """
            ## 3. Save and load

            `save_pretrained` writes a folder with the weights (`model.safetensors`), `config.json`, the generation
            settings, a model card (`README.md`) and the model code itself (see notebook 06). Any Auto class loads
            it back. In evaluation mode (no dropout) the reloaded model computes exactly the same numbers.
            """
        ),
        code(
            """
            folder = OUT / "tiny-gpt"
            gpt_like.save_pretrained(folder)
            print("files:", ", ".join(sorted(p.name for p in folder.iterdir())))

            reloaded = AutoModelForCausalLM.from_pretrained(folder).eval()
            with torch.no_grad():
                before, after = gpt_like(input_ids=ids).logits, reloaded(input_ids=ids).logits
            print(f"{type(reloaded).__name__}: logits identical after the round trip: {torch.equal(before, after)}")

            # AutoModel on the same folder builds the matching bare body (decoder-only) with the body's weights.
            body = AutoModel.from_pretrained(folder).eval()
            with torch.no_grad():
                same_body = torch.equal(body(input_ids=ids).last_hidden_state,
                                        gpt_like.model(input_ids=ids).last_hidden_state)
            print(f"AutoModel -> {type(body).__name__} ({body.config.stacks}); hidden states identical: {same_body}")
            """
        ),
        md(
            """
            ## 4. Tokenizers and `generate()`

            Real text needs a tokenizer. `train_tokenizer` learns one in a second from any texts and returns a
            standard `PreTrainedTokenizerFast`; `config_from_tokenizer` copies its vocabulary size and special
            token ids into a config. Three kinds fit the three shapes: byte-level BPE for a GPT-style model,
            WordPiece for a BERT-style model, and a BPE shared between source and target languages for
            translation (the paper shares one vocabulary between English and German).
            """
        ),
        code(
            """
            import itertools

            from vaswani import config_from_tokenizer, train_tokenizer
            from vaswani.training import load_table
            from vaswani.training.data import BIBLE, ROTTEN_TOMATOES, SHAKESPEARE

            with open(SHAKESPEARE, encoding="utf-8") as handle:
                shakespeare_lines = [line.strip() for line in itertools.islice(handle, 5000) if line.strip()]
            reviews = load_table(ROTTEN_TOMATOES, split="train").select(range(3000))
            verses = load_table(BIBLE, split="train").select(range(3000))

            SMALL = dict(d_model=64, num_heads=4, d_ff=256, num_hidden_layers=2)
            gpt_tokenizer = train_tokenizer(shakespeare_lines, kind="byte-bpe", vocab_size=1000, model_max_length=128)
            bert_tokenizer = train_tokenizer(reviews, kind="wordpiece", vocab_size=1000, model_max_length=128,
                                             text_column="text")
            mt_tokenizer = train_tokenizer(verses, kind="shared-bpe", vocab_size=1000, model_max_length=128,
                                           text_column=["en", "es"])
            for kind, tokenizer, text in (("byte-bpe", gpt_tokenizer, "ROMEO: But soft, what light"),
                                          ("wordpiece", bert_tokenizer, "A three-hour cinema master class."),
                                          ("shared-bpe", mt_tokenizer, "In the beginning God created")):
                print(f"{kind:10s} {len(tokenizer):5d} tokens  {tokenizer.tokenize(text)}")

            gpt = VaswaniForCausalLM(config_from_tokenizer(gpt_tokenizer, **SMALL)).eval()
            bert = VaswaniForMaskedLM(config_from_tokenizer(bert_tokenizer, **SMALL)).eval()
            translator = VaswaniForConditionalGeneration(config_from_tokenizer(mt_tokenizer, **SMALL)).eval()
            """
        ),
        md(
            """
            `generate()` is the standard Hugging Face decoding loop: greedy search, beam search or sampling, with a
            key/value cache so that each new token attends over the cached keys and values instead of recomputing
            the whole prefix. The GPT-style tokenizer pads on the left, so prompts of different lengths share one
            batch. Greedy decoding with and without the cache must agree token for token.
            """
        ),
        code(
            """
            prompts = gpt_tokenizer(["ROMEO:", "To be, or not to be"], return_tensors="pt", padding=True)
            with_cache = gpt.generate(**prompts, max_new_tokens=12, do_sample=False)
            without_cache = gpt.generate(**prompts, max_new_tokens=12, do_sample=False, use_cache=False)
            for text in gpt_tokenizer.batch_decode(with_cache, skip_special_tokens=True):
                print(repr(text))
            print("cache and no cache agree:", torch.equal(with_cache, without_cache))

            source = mt_tokenizer(["In the beginning God created the heavens and the earth."], return_tensors="pt")
            beams = translator.generate(**source, max_new_tokens=12, num_beams=4, length_penalty=0.6,
                                        num_return_sequences=2)
            print("beam search, 2 best of 4 beams:", mt_tokenizer.batch_decode(beams, skip_special_tokens=True))
            """
        ),
        md(
            """
            ## 5. Pipelines

            With a model folder that also holds its tokenizer, `pipeline(task, model=folder)` does tokenising,
            the forward pass and decoding in one call. `text-generation`, `fill-mask`, `feature-extraction`,
            `text-classification` and `token-classification` are the standard ones. transformers 5 removed the
            sequence-to-sequence pipeline; the package brings it back as `vaswani-text2text` (and
            `vaswani-question-answering`).
            """
        ),
        code(
            """
            from transformers import pipeline

            folders = {}
            for name, model, tokenizer in (("gpt", gpt, gpt_tokenizer), ("bert", bert, bert_tokenizer),
                                           ("translator", translator, mt_tokenizer)):
                folders[name] = OUT / name
                model.save_pretrained(folders[name])
                tokenizer.save_pretrained(folders[name])

            generator = pipeline("text-generation", model=str(folders["gpt"]))
            print("text-generation:", generator("ROMEO:", max_new_tokens=10, do_sample=False))

            fill = pipeline("fill-mask", model=str(folders["bert"]))
            for guess in fill(f"a three-hour cinema {bert_tokenizer.mask_token} class.", top_k=3):
                print(f"fill-mask: {guess['token_str']!r:14s} score {guess['score']:.4f}")

            features = pipeline("feature-extraction", model=str(folders["bert"]))  # AutoModel: the bare encoder
            vectors = features("A three-hour cinema master class.", return_tensors=True)
            print("feature-extraction:", type(features.model).__name__, "->", tuple(vectors.shape),
                  "(batch, tokens, d_model)")

            translate = pipeline("vaswani-text2text", model=str(folders["translator"]))
            print("vaswani-text2text:", translate("God said, let there be light.", max_new_tokens=8, num_beams=4,
                                                  length_penalty=0.6))
            """
        ),
        md(
            """
            The fill-mask scores are close to 1/vocabulary because nothing has been learned yet. Where to next:

            - **02 · BERT-style**: pre-train an encoder with masked-LM and next-sentence prediction, then fine-tune
              it for sentiment;
            - **03 · GPT-style**: a character-level Shakespeare model and every decoding strategy of `generate()`;
            - **04 · Translation**: the paper's training recipe on English to Spanish, with BLEU and chrF;
            - **05 · Inside attention**: heat maps of attention weights and of the positional encoding;
            - **06 · Sharing**: Hub-ready folders, loading without the package, the model card, `push_to_hub`.
            """
        ),
        closing_cell(),
    ]


# ======================================================================================================================
# 02 BERT-style
# ======================================================================================================================
def bert_style():
    return [
        md(
            """
            # 02 · BERT-style: pre-train an encoder, then fine-tune it for sentiment

            BERT (Devlin et al., 2019) is the Transformer's **encoder** alone (paper section 3.1, left half of
            Figure 1), trained in two stages:

            1. **pre-training** on unlabelled text with two self-made tasks: *masked language modelling* (hide
               some words, predict them from both sides) and *next-sentence prediction* (does sentence B follow
               sentence A?);
            2. **fine-tuning** on a labelled task, here the sentiment of movie reviews, starting from the
               pre-trained weights.

            The data are the Rotten Tomatoes review snippets shipped in `vaswani/data/` (one sentence each,
            labelled 1 for positive and 0 for negative). We compare the fine-tuned model with the same model
            trained from scratch on the labels alone. Everything runs on a CPU in a few minutes, so the model is
            small and the pre-training short: read the numbers as a demonstration of the method, not as what
            BERT can do. As in BERT, the positions are learned (`position_embedding_type="learned"`): one trained
            vector for each of the `MAX_LENGTH` positions.
            """
        ),
        setup_cell("02_bert_style"),
        code(
            """
            from vaswani.training import load_table
            from vaswani.training.data import ROTTEN_TOMATOES

            train_rows = load_table(ROTTEN_TOMATOES, split="train")
            test_rows = load_table(ROTTEN_TOMATOES, split="test")
            if FAST:
                train_rows = train_rows.shuffle(seed=0).select(range(256))
                test_rows = test_rows.shuffle(seed=0).select(range(128))

            MAX_LENGTH = 64          # tokens per example (a review, or a pair of reviews for NSP)
            VOCAB = 1000 if FAST else 4000
            PRETRAIN_STEPS = 8 if FAST else 900
            FINETUNE_EPOCHS = 1 if FAST else 2
            ARCHITECTURE = dict(d_model=64 if FAST else 128, num_heads=4, d_ff=256 if FAST else 512,
                                num_hidden_layers=2, position_embedding_type="learned", activation_function="gelu",
                                max_position_embeddings=MAX_LENGTH, dropout=0.1)

            positive = sum(train_rows["label"]) / len(train_rows)
            majority = max(sum(test_rows["label"]), len(test_rows) - sum(test_rows["label"])) / len(test_rows)
            print(f"{len(train_rows):,} training reviews ({positive:.1%} positive), {len(test_rows):,} test reviews")
            print(f"always answering the majority class scores {majority:.1%} on the test reviews")
            for row in train_rows.select(range(3)):
                print(f"  label {row['label']}: {row['text']}")
            """
        ),
        md(
            """
            ## A WordPiece vocabulary

            BERT reads text as WordPiece tokens: frequent words stay whole, rare words split into pieces marked
            `##`. The tokenizer adds `[CLS]` at the start (its final vector will represent the whole input) and
            `[SEP]` after each segment; `token_type_ids` tell segment A (0) from segment B (1).
            """
        ),
        code(
            """
            from vaswani import train_tokenizer

            tokenizer = train_tokenizer(train_rows, kind="wordpiece", vocab_size=VOCAB, model_max_length=MAX_LENGTH,
                                        text_column="text")
            pair = tokenizer("A three-hour cinema master class.", "Unfortunately, it is also a bore.")
            print(f"{len(tokenizer):,} tokens in the vocabulary")
            print(tokenizer.convert_ids_to_tokens(pair["input_ids"]))
            print(pair["token_type_ids"])
            """
        ),
        md(
            """
            ## 1. Pre-training: masked LM and next-sentence prediction

            `vaswani.training.tasks.prepare_mlm(..., nsp=True)` turns the reviews into BERT's training pairs:
            for each review A, segment B is the next review (label 0) or a random one (label 1), half each. The
            collator then hides 15% of the tokens (80% become `[MASK]`, 10% a random token, 10% stay) and the
            model must recover them. `VaswaniForPreTraining` has both heads: the masked-LM head, whose output
            matrix is the input embedding (paper 3.4), and the next-sentence classifier on the `[CLS]` vector.

            The package's `vaswani.training.train` runs Hugging Face's `Trainer` with these settings and
            `publish` writes the finished model folder (weights, config, tokenizer, model card).

            A caveat about the data: the reviews are independent snippets, so "the next review" has nothing to do
            with the current one. Next-sentence prediction has nothing real to learn here; we keep it to show
            the head, and measure it below against the 50% of guessing.
            """
        ),
        code(
            """
            from vaswani import VaswaniForPreTraining, config_from_tokenizer
            from vaswani.training import RunSettings, publish, train
            from vaswani.training.tasks import prepare_mlm

            transformers.set_seed(0)
            config = config_from_tokenizer(tokenizer, **ARCHITECTURE)
            pretraining_data = prepare_mlm(train_rows, test_rows, tokenizer, "text", MAX_LENGTH, nsp=True, seed=0)
            model = VaswaniForPreTraining(config)
            print(f"{type(model).__name__}: {sum(p.numel() for p in model.parameters()):,} parameters, "
                  f"{len(pretraining_data.train):,} sentence pairs, {PRETRAIN_STEPS} steps of 32")

            settings = RunSettings(output=OUT / "pretrained", steps=PRETRAIN_STEPS, batch_size=32, learning_rate=1e-3,
                                   warmup_ratio=0.05, logging_steps=max(1, PRETRAIN_STEPS // 10), quiet=True, seed=0)
            started = time.perf_counter()
            pretrainer, _ = train(model, tokenizer, pretraining_data, settings)
            pretrained_folder = publish(pretrainer, OUT / "pretrained", overwrite=True)
            print(f"pre-training took {time.perf_counter() - started:.0f} s; folder: {os.path.relpath(pretrained_folder)}")
            """
        ),
        md(
            """
            How well did each task go on the held-out test reviews? We run the two heads ourselves: the masked-LM
            loss (cross-entropy in nats over the hidden tokens; its exponential, the perplexity, is the number of
            equally likely words the model is choosing among) and the next-sentence accuracy.
            """
        ),
        code(
            """
            import math

            from torch.utils.data import DataLoader

            model = pretrainer.model.eval()
            mlm_loss, mlm_tokens, nsp_right, pairs = 0.0, 0, 0, 0
            with torch.no_grad():
                for batch in DataLoader(pretraining_data.eval, batch_size=64, collate_fn=pretraining_data.collator):
                    nsp_labels = batch.pop("next_sentence_label")
                    output = model(**batch)  # labels only: the loss is the masked-LM loss alone
                    hidden = int((batch["labels"] != -100).sum())
                    mlm_loss += output.loss.item() * hidden
                    mlm_tokens += hidden
                    nsp_right += int((output.seq_relationship_logits.argmax(-1) == nsp_labels).sum())
                    pairs += len(nsp_labels)
            mlm_loss /= mlm_tokens
            print(f"masked LM on the test reviews: loss {mlm_loss:.3f} nats, perplexity {math.exp(mlm_loss):.0f} "
                  f"(a uniform guess over the vocabulary: {len(tokenizer):,})")
            print(f"next-sentence prediction: {nsp_right / pairs:.1%} right on {pairs:,} test pairs (guessing: 50%)")
            """
        ),
        md(
            """
            The masked-LM head can be asked directly through the `fill-mask` pipeline, which loads the
            pre-training folder with `AutoModelForMaskedLM` (the next-sentence head is simply left out):
            """
        ),
        code(
            """
            from transformers import pipeline

            fill = pipeline("fill-mask", model=str(pretrained_folder))
            for text in ("the film is [MASK] .", "one of the [MASK] movies of the year .", "the [MASK] is terrible ."):
                guesses = ", ".join(f"{g['token_str']} ({g['score']:.2f})" for g in fill(text, top_k=5))
                print(f"{text:40s} -> {guesses}")
            """
        ),
        md(
            """
            How to read these guesses: a masked-LM first learns how frequent each token is, and only later, with
            much more text and many more steps, how the context changes the odds. Guesses that are the same
            frequent tokens (punctuation, "the", "a") whatever the sentence mean the model is still in that first
            stage; guesses that fit each sentence mean it has started to use the context.

            ## 2. Fine-tuning for sentiment, from the pre-trained encoder and from scratch

            `AutoModelForSequenceClassification.from_pretrained` on the pre-training folder keeps the encoder and
            the `[CLS]` pooler, drops the two pre-training heads and adds a fresh two-way classifier.
            `output_loading_info=True` lists exactly what was left out and what is new.

            The baseline is the same architecture with random weights. Both train with the same settings
            (`prepare_sequence_classification` and the package's `train`, i.e. `Trainer`), and both are scored
            with accuracy and F1 through the package's offline `evaluate` metrics.
            """
        ),
        code(
            """
            from safetensors import safe_open
            from transformers import AutoModelForSequenceClassification

            from vaswani import VaswaniForSequenceClassification
            from vaswani.training.evaluation import classification_metrics, predict_logits
            from vaswani.training.tasks import prepare_sequence_classification

            LABELS = dict(num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
            sentiment = prepare_sequence_classification(train_rows, test_rows, tokenizer, "text", "label", MAX_LENGTH)

            transformers.set_seed(0)
            from_pretrained, info = AutoModelForSequenceClassification.from_pretrained(
                pretrained_folder, output_loading_info=True, **LABELS)
            with safe_open(pretrained_folder / "model.safetensors", "pt") as saved:
                left_out = set(saved.keys()) - set(from_pretrained.state_dict())
            print("left out:", sorted({key.split(".")[0] for key in left_out}), "(the pre-training heads)")
            print("new:", sorted(info["missing_keys"]), "(the classifier, randomly initialised)")
            transformers.set_seed(0)
            from_scratch = VaswaniForSequenceClassification(config_from_tokenizer(tokenizer, **ARCHITECTURE, **LABELS))


            def finetune(model, name):
                settings = RunSettings(output=OUT / name, steps=8 if FAST else None, epochs=FINETUNE_EPOCHS,
                                       batch_size=32, learning_rate=3e-4, warmup_ratio=0.1,
                                       logging_steps=4 if FAST else 60, quiet=True, seed=0)
                started = time.perf_counter()
                trainer, _ = train(model, tokenizer, sentiment, settings)
                logits, labels = predict_logits(trainer, sentiment.eval)
                metrics = classification_metrics(logits.argmax(-1), labels, num_labels=2)
                print(f"== {name}: {metrics} in {time.perf_counter() - started:.0f} s")
                return trainer, metrics


            pretrained_trainer, pretrained_metrics = finetune(from_pretrained, "sentiment-from-pretrained")
            scratch_trainer, scratch_metrics = finetune(from_scratch, "sentiment-from-scratch")
            """
        ),
        code(
            """
            import matplotlib.pyplot as plt


            def losses(trainer):
                points = [(log["step"], log["loss"]) for log in trainer.state.log_history if "loss" in log]
                return [s for s, _ in points], [loss for _, loss in points]


            fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 3.8))
            left.plot(*losses(pretrainer), color="tab:purple")
            left.set(title="pre-training loss (masked LM + NSP)", xlabel="step", ylabel="loss (nats)")
            middle.plot(*losses(pretrained_trainer), label="from the pre-trained encoder")
            middle.plot(*losses(scratch_trainer), label="from scratch")
            middle.set(title="fine-tuning loss (sentiment)", xlabel="step", ylabel="loss (nats)")
            middle.legend()
            names = ["majority class", "from scratch", "pre-trained"]
            values = [majority, scratch_metrics["accuracy"], pretrained_metrics["accuracy"]]
            bars = right.bar(names, values, color=["lightgray", "tab:orange", "tab:blue"])
            right.bar_label(bars, labels=[f"{v:.1%}" for v in values])
            right.set(title="test accuracy", ylim=(0, 1))
            fig.tight_layout()
            plt.show()

            gain = pretrained_metrics["accuracy"] - scratch_metrics["accuracy"]
            print(f"test accuracy: pre-trained {pretrained_metrics['accuracy']:.1%} (F1 {pretrained_metrics['f1']:.3f}), "
                  f"from scratch {scratch_metrics['accuracy']:.1%} (F1 {scratch_metrics['f1']:.3f}), "
                  f"majority class {majority:.1%}; pre-training changed accuracy by {100 * gain:+.1f} points")
            """
        ),
        md(
            """
            **Reading the result.** Pre-training pays when the unlabelled text is much larger than the labelled
            set: BERT read billions of words before seeing a single label. Here the "unlabelled" corpus is the
            same 11k training reviews, for a few hundred steps, so the difference printed above is small and
            can go either way from one seed to another. The package's README reports a longer run of the same
            comparison (`benchmarks/quality.py`). The recipe, though, is the real one, and it scales: a bigger
            corpus and more steps go through the very same functions.

            The fine-tuned folder is an ordinary classifier for the `text-classification` pipeline:
            """
        ),
        code(
            """
            folder = publish(pretrained_trainer, OUT / "sentiment", overwrite=True)
            classify = pipeline("text-classification", model=str(folder))
            for review in ("A moving, beautifully acted film.", "Dull, predictable and far too long.",
                           "The plot makes no sense, but the actors are wonderful."):
                print(f"{review:58s} -> {classify(review)[0]}")
            """
        ),
        closing_cell(),
    ]


# ======================================================================================================================
# 03 GPT-style
# ======================================================================================================================
def gpt_style():
    return [
        md(
            """
            # 03 · GPT-style: a character-level Shakespeare model and every way to decode it

            A GPT is the Transformer's **decoder** alone: masked self-attention (each position sees only the
            positions before it, paper 3.2.3) and feed-forward layers, trained to predict the next token. Here
            the tokens are single characters of *Tiny Shakespeare* (about a million characters, shipped in
            `vaswani/data/`), as in Karpathy's char-rnn and nanoGPT: the model learns spelling, words, names and
            the layout of a play from scratch.

            Then we decode the same model with each strategy of `generate()`: greedy, temperature sampling,
            top-k, top-p (nucleus) and beam search.
            """
        ),
        setup_cell("03_gpt_style"),
        code(
            """
            from vaswani import VaswaniForCausalLM, config_from_tokenizer, train_tokenizer
            from vaswani.training import RunSettings, publish, read_text, train
            from vaswani.training.data import SHAKESPEARE
            from vaswani.training.tasks import prepare_clm

            BLOCK = 128                       # characters of context per training example
            STEPS = 30 if FAST else 1500
            text = read_text(SHAKESPEARE)
            cut = int(0.9 * len(text))        # the last 10% is held out for validation, as nanoGPT does
            train_text, validation_text = text[:cut], text[cut:]
            if FAST:
                train_text, validation_text = train_text[:100_000], validation_text[:20_000]

            tokenizer = train_tokenizer([text], kind="char", model_max_length=BLOCK + 1)
            print(f"{len(text):,} characters, {len(tokenizer)} tokens (characters plus <pad> <s> </s> <unk>)")
            print(tokenizer.tokenize("ROMEO:\\nBut soft!"))
            print(text[:200])
            """
        ),
        md(
            """
            ## Training

            `prepare_clm` cuts the text into blocks of `BLOCK + 1` characters: the model reads the first `BLOCK`
            and, at every position, predicts the next character (the loss shifts the labels by one inside the
            model). The settings follow nanoGPT's small CPU model: pre-LN (`norm_first`), learned positions
            (`position_embedding_type="learned"`, one trained vector for each of the `BLOCK + 1` positions), GELU, no dropout, AdamW with a cosine schedule. The package's `train` runs `Trainer` and evaluates
            on the held-out 10% along the way.
            """
        ),
        code(
            """
            data = prepare_clm(train_text, validation_text, tokenizer, BLOCK)
            config = config_from_tokenizer(
                tokenizer, d_model=64 if FAST else 128, num_heads=4, d_ff=256 if FAST else 512,
                num_hidden_layers=2 if FAST else 4, max_position_embeddings=BLOCK + 1, position_embedding_type="learned",
                activation_function="gelu", norm_first=True, scale_embedding=False, dropout=0.0)
            transformers.set_seed(0)
            model = VaswaniForCausalLM(config)
            print(f"{sum(p.numel() for p in model.parameters()):,} parameters; {len(data.train):,} training blocks, "
                  f"{len(data.eval):,} validation blocks; {STEPS} steps of 16 blocks")

            settings = RunSettings(output=OUT / "shakespeare-char", steps=STEPS, batch_size=16, learning_rate=1e-3,
                                   warmup_ratio=100 if not FAST else 3, lr_scheduler="cosine", weight_decay=0.1,
                                   eval_steps=max(STEPS // 6, 1), logging_steps=max(STEPS // 25, 1), quiet=True,
                                   extra={"adam_beta2": 0.99})
            started = time.perf_counter()
            trainer, validation_loss = train(model, tokenizer, data, settings)
            folder = publish(trainer, OUT / "shakespeare-char", overwrite=True)
            print(f"trained in {time.perf_counter() - started:.0f} s; validation loss {validation_loss:.3f} nats per "
                  f"character")
            """
        ),
        code(
            """
            import math

            import matplotlib.pyplot as plt

            history = trainer.state.log_history
            train_points = [(log["step"], log["loss"]) for log in history if "loss" in log]
            eval_points = [(log["step"], log["eval_loss"]) for log in history if "eval_loss" in log]
            fig, ax = plt.subplots(figsize=(8, 4))
            ax.plot(*zip(*train_points), label="training loss", alpha=0.8)
            ax.plot(*zip(*eval_points), "o-", label="validation loss (held-out 10%)")
            ax.axhline(math.log(len(tokenizer)), color="gray", ls=":", label=f"uniform guess, ln {len(tokenizer)}")
            ax.set(xlabel="step", ylabel="cross-entropy (nats per character)", title="Learning Shakespeare, character by character")
            ax.legend()
            plt.show()
            print(f"final validation loss {eval_points[-1][1]:.3f} nats = {eval_points[-1][1] / math.log(2):.2f} bits "
                  f"per character (perplexity {math.exp(eval_points[-1][1]):.2f})")
            """
        ),
        md(
            """
            ## Decoding: from one distribution to a text

            At each step the model gives a probability for every character. A decoding strategy decides what to
            do with it:

            - **greedy**: always take the most likely character. Deterministic, and prone to loops.
            - **temperature** *T*: divide the logits by *T* before the softmax. *T* < 1 sharpens the distribution
              (safer, duller), *T* > 1 flattens it (more surprising, more mistakes).
            - **top-k**: sample only among the *k* most likely characters.
            - **top-p** (nucleus): sample among the smallest set of characters whose probabilities add up to *p*.
            - **beam search**: keep the *n* most likely partial texts and extend all of them; it finds a
              high-probability continuation, which for open-ended text tends to be bland and repetitive.

            The figure shows what temperature and truncation do to the model's actual distribution after a
            prompt.
            """
        ),
        code(
            """
            model = trainer.model.eval()
            prompt_text = "ROMEO:\\nI will s"
            prompt = tokenizer(prompt_text, return_tensors="pt")
            with torch.no_grad():
                logits = model(**prompt).logits[0, -1]
            top = torch.topk(logits, 12).indices
            visible = {"\\n": "\\\\n", " ": "␣"}
            labels = [visible.get(t, t) for t in tokenizer.convert_ids_to_tokens(top.tolist())]

            fig, axes = plt.subplots(1, 4, figsize=(16, 3.6), sharey=True)
            for ax, temperature in zip(axes[:3], (0.5, 1.0, 1.5)):
                probabilities = torch.softmax(logits / temperature, -1)
                ax.bar(range(12), probabilities[top], color="tab:blue")
                ax.set(title=f"temperature {temperature}", xticks=range(12))
                ax.set_xticklabels(labels)
            probabilities = torch.softmax(logits, -1)
            cumulative = probabilities[top].cumsum(0)
            nucleus = int((cumulative < 0.9).sum()) + 1
            colors = ["tab:green" if i < nucleus else "lightgray" for i in range(12)]
            axes[3].bar(range(12), probabilities[top], color=colors)
            axes[3].set(title=f"top-p 0.9 keeps {nucleus} characters", xticks=range(12))
            axes[3].set_xticklabels(labels)
            axes[0].set_ylabel("probability")
            fig.suptitle(f"Next character after {prompt_text!r} (the 12 most likely)")
            fig.tight_layout()
            plt.show()
            """
        ),
        md(
            """
            Now the texts. Every call is `model.generate(...)`; only the arguments change. The sampled ones use a
            fixed seed so that the run is reproducible. The model was trained on blocks of 128 characters with
            learned positions, so prompt plus continuation stay within that window.
            """
        ),
        code(
            """
            prompt = tokenizer("ROMEO:\\n", return_tensors="pt")
            room = BLOCK - prompt["input_ids"].shape[1]
            strategies = {
                "greedy": dict(do_sample=False),
                "temperature 0.5": dict(do_sample=True, temperature=0.5, top_k=0),
                "temperature 1.0": dict(do_sample=True, temperature=1.0, top_k=0),
                "temperature 1.5": dict(do_sample=True, temperature=1.5, top_k=0),
                "top-k 5": dict(do_sample=True, top_k=5),
                "top-p 0.9": dict(do_sample=True, top_p=0.9, top_k=0),
                "beam search, 4 beams": dict(do_sample=False, num_beams=4),
            }
            samples = {}
            for name, arguments in strategies.items():
                torch.manual_seed(0)
                output = model.generate(**prompt, max_new_tokens=room, **arguments)
                samples[name] = tokenizer.decode(output[0], skip_special_tokens=True)
                print(f"--- {name} ---\\n{samples[name]}\\n")
            """
        ),
        md(
            """
            How different are they? A crude but telling measure is how much of each text repeats itself: the
            share of its 8-character snippets that occur more than once. Greedy and beam search chase the single
            most likely path and often fall into a loop; sampling at a high temperature never loops but misspells
            more. The table below is computed from the samples above.
            """
        ),
        code(
            """
            import collections

            words = set(train_text.split())
            print(f"{'strategy':22s} {'repeated 8-grams':>17s} {'known words':>12s}")
            for name, sample in samples.items():
                body = sample[len("ROMEO:\\n"):]
                grams = [body[i:i + 8] for i in range(len(body) - 7)]
                counts = collections.Counter(grams)
                repeated = sum(c for c in counts.values() if c > 1) / max(len(grams), 1)
                tokens = body.split()
                known = sum(t in words for t in tokens) / max(len(tokens), 1)
                print(f"{name:22s} {repeated:17.0%} {known:12.0%}")
            """
        ),
        md(
            """
            "Known words" is the share of the generated words (split on spaces, punctuation attached) that occur
            anywhere in the training text. The finished model folder loads anywhere with
            `AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained`, and serves the
            `text-generation` pipeline:
            """
        ),
        code(
            """
            from transformers import pipeline

            generator = pipeline("text-generation", model=str(folder))
            torch.manual_seed(0)
            print(generator("JULIET:\\n", max_new_tokens=100, do_sample=True, temperature=0.8, top_k=40)[0]["generated_text"])
            """
        ),
        closing_cell(),
    ]


# ======================================================================================================================
# 04 Translation
# ======================================================================================================================
def translation():
    return [
        md(
            """
            # 04 · Translation with the paper's recipe: English to Spanish

            The full Transformer, encoder and decoder, trained as section 5 of the paper describes, on
            English-Spanish Bible verse pairs shipped in `vaswani/data/` (World English Bible and the Reina-Valera
            1909). The ingredients, each from `vaswani.training`:

            - a **shared BPE vocabulary** for both languages, with one embedding matrix for the encoder input, the
              decoder input and the output projection (paper 3.4);
            - **Adam** with β1 = 0.9, β2 = 0.98, ε = 1e-9 and the **warm-up then inverse-square-root learning
              rate** of equation 3 (5.3);
            - **label smoothing** ε_ls = 0.1 (5.4);
            - **checkpoint averaging**: the final model is the mean of the last 5 checkpoints (6.1);
            - **beam search** with 4 beams and length penalty α = 0.6 (6.1), scored with **BLEU** and **chrF**;
            - the paper's **sinusoidal positions** (3.5), the default `position_embedding_type="sinusoidal"`.

            The paper trained for 12 hours on 8 GPUs. We have a few CPU minutes, so the model is tiny and sees
            only short verses; the translations are rough, and the numbers are what this run measured.
            """
        ),
        setup_cell("04_translation"),
        code(
            """
            from vaswani import train_tokenizer
            from vaswani.training import load_table
            from vaswani.training.data import BIBLE

            STEPS = 30 if FAST else 1200
            MAX_TOKENS = 32            # keep verses of at most this many tokens per side: short ones learn fastest
            TEST_SENTENCES = 16 if FAST else 200
            train_rows, test_rows = load_table(BIBLE, split="train"), load_table(BIBLE, split="test")
            if FAST:
                train_rows = train_rows.select(range(2000))

            tokenizer = train_tokenizer(train_rows, kind="shared-bpe", vocab_size=1000 if FAST else 8000,
                                        model_max_length=128, text_column=["en", "es"])


            def short(rows):
                en = tokenizer(list(rows["en"]))["input_ids"]
                es = tokenizer(list(rows["es"]))["input_ids"]
                keep = [i for i, (a, b) in enumerate(zip(en, es)) if len(a) <= MAX_TOKENS and len(b) <= MAX_TOKENS]
                return rows.select(keep)


            all_train = len(train_rows)
            train_rows, test_rows = short(train_rows), short(test_rows).select(range(TEST_SENTENCES))
            print(f"shared vocabulary: {len(tokenizer):,} tokens; {len(train_rows):,} of {all_train:,} training pairs "
                  f"have at most {MAX_TOKENS} tokens per side; {len(test_rows)} short test verses")
            example = train_rows[0]
            print(example["en"], "->", tokenizer.tokenize(example["en"]))
            print(example["es"], "->", tokenizer.tokenize(example["es"]))
            """
        ),
        md(
            """
            ## The learning-rate schedule (paper 5.3)

            lrate = d_model^-0.5 · min(step^-0.5, step · warmup_steps^-1.5): a linear climb during the warm-up,
            then a slow decay as one over the square root of the step. The paper warms up for 4,000 of its 100,000
            steps; `paper_optimizer` warms up for 10% of a short run (at most 4,000). Since the peak,
            d_model^-0.5 · warmup^-0.5, grows as the warm-up shrinks, short runs multiply the rate by `lr_scale`.
            """
        ),
        code(
            """
            import matplotlib.pyplot as plt

            from vaswani.training import paper_learning_rate, warmup_steps_for

            D_MODEL, LR_SCALE = (64 if FAST else 128), 0.3
            warmup = warmup_steps_for(STEPS)
            fig, (left, right) = plt.subplots(1, 2, figsize=(13, 3.6))
            steps = range(1, 100_001, 100)
            left.plot(steps, [paper_learning_rate(s, 512, 4000) for s in steps])
            left.set(title="the paper: d_model 512, warm-up 4,000 of 100k steps", xlabel="step", ylabel="learning rate")
            steps = range(1, STEPS + 1)
            right.plot(steps, [paper_learning_rate(s, D_MODEL, warmup, LR_SCALE) for s in steps], color="tab:red")
            right.set(title=f"this run: d_model {D_MODEL}, warm-up {warmup} of {STEPS} steps, scale {LR_SCALE}",
                      xlabel="step")
            fig.tight_layout()
            plt.show()
            print(f"peak learning rate here: {paper_learning_rate(warmup, D_MODEL, warmup, LR_SCALE):.2e} at step {warmup}")
            """
        ),
        md(
            """
            ## Training

            `RunSettings(paper_recipe=True, ...)` switches on everything above: the optimizer and schedule,
            label smoothing 0.1 in the loss of every training step (never in evaluation: it is a training setting,
            not stored with the model), and, with `save_steps` and `average_last=5`, the average of
            the last five checkpoints at the end. The trainer is `Seq2SeqTrainer`; the collator shifts each
            Spanish target right to make the decoder's input (teacher forcing).
            """
        ),
        code(
            """
            from transformers import Seq2SeqTrainer

            from vaswani import VaswaniForConditionalGeneration, config_from_tokenizer
            from vaswani.training import RunSettings, publish, train
            from vaswani.training.tasks import prepare_seq2seq

            transformers.set_seed(0)
            config = config_from_tokenizer(tokenizer, d_model=D_MODEL, num_heads=4, d_ff=4 * D_MODEL,
                                           num_hidden_layers=2 if FAST else 3, dropout=0.1,
                                           max_position_embeddings=128)
            model = VaswaniForConditionalGeneration(config)
            data = prepare_seq2seq(train_rows, None, tokenizer, model, "en", "es", MAX_TOKENS)
            print(f"{sum(p.numel() for p in model.parameters()):,} parameters, {config.num_encoder_layers}+"
                  f"{config.num_decoder_layers} layers, d_model {config.d_model}, {config.num_heads} heads; "
                  f"{STEPS} steps of 32 pairs")

            settings = RunSettings(output=OUT / "bible-en-es", steps=STEPS, batch_size=32, paper_recipe=True,
                                   lr_scale=LR_SCALE, save_steps=STEPS // 30 if not FAST else 10, average_last=5,
                                   logging_steps=max(STEPS // 15, 1), quiet=True, seed=0)
            started = time.perf_counter()
            trainer, _ = train(model, tokenizer, data, settings, trainer_class=Seq2SeqTrainer)
            folder = publish(trainer, OUT / "bible-en-es", overwrite=True)
            print(f"trained in {time.perf_counter() - started:.0f} s; label smoothing in training: {trainer.label_smoothing}")
            """
        ),
        code(
            """
            history = trainer.state.log_history
            points = [(log["step"], log["loss"], log["learning_rate"]) for log in history if "loss" in log]
            fig, ax = plt.subplots(figsize=(8, 3.8))
            ax.plot([p[0] for p in points], [p[1] for p in points], "o-")
            ax.set(xlabel="step", ylabel="training loss (nats, label-smoothed)", title="English to Spanish")
            twin = ax.twinx()
            twin.plot([p[0] for p in points], [p[2] for p in points], color="tab:red", alpha=0.5)
            twin.set_ylabel("learning rate", color="tab:red")
            plt.show()
            """
        ),
        md(
            """
            ## BLEU and chrF

            BLEU (Papineni et al., 2002) counts the word n-grams (1 to 4) a translation shares with the reference,
            with a penalty for translations that are too short; it is the paper's metric. chrF counts character
            n-grams instead, which rewards getting word stems right even when endings are wrong: kinder to
            small models and to a language as inflected as Spanish. Both come from the package's local `evaluate`
            modules (`vaswani.metrics.load_metric`), so nothing is downloaded.

            We score three decoders on the same test verses: the averaged model with greedy search, the averaged
            model with the paper's beam search (4 beams, α = 0.6), and the **last** checkpoint alone with the
            same beam search, to see what averaging did.
            """
        ),
        code(
            """
            from transformers import AutoModelForSeq2SeqLM

            from vaswani.metrics import load_metric
            from vaswani.training.recipe import LENGTH_PENALTY, NUM_BEAMS, complete_checkpoints
            from vaswani.training.tasks import generate_texts

            bleu, chrf = load_metric("sacrebleu"), load_metric("chrf")
            sources, references = list(test_rows["en"]), [[r] for r in test_rows["es"]]
            averaged = trainer.model.eval()
            last_checkpoint = complete_checkpoints(settings.checkpoint_dir)[-1]
            last = AutoModelForSeq2SeqLM.from_pretrained(last_checkpoint).eval()
            beam = dict(num_beams=NUM_BEAMS, length_penalty=LENGTH_PENALTY)
            decoders = {
                "averaged, greedy": (averaged, {}),
                f"averaged, beam {NUM_BEAMS}, alpha {LENGTH_PENALTY}": (averaged, beam),
                f"last checkpoint ({last_checkpoint.name}), beam": (last, beam),
            }
            scores, translations = {}, {}
            for name, (model, arguments) in decoders.items():
                started = time.perf_counter()
                predicted = generate_texts(model, tokenizer, sources, 128, batch_size=50, max_new_tokens=64, **arguments)
                translations[name] = predicted
                scores[name] = (bleu.compute(predictions=predicted, references=references)["score"],
                                chrf.compute(predictions=predicted, references=references)["score"])
                print(f"{name:40s} BLEU {scores[name][0]:5.2f}  chrF {scores[name][1]:5.2f}  "
                      f"({time.perf_counter() - started:.0f} s)")
            """
        ),
        md(
            """
            How to read the three lines. Beam search keeps several candidates alive and usually finds a more
            probable, and better scored, translation than greedy search. Averaging is subtler: in the paper the
            last five checkpoints were written ten minutes apart at the end of a twelve-hour run, when the
            weights change slowly, and their mean smooths out the noise of the last updates. Our checkpoints are
            a few dozen steps apart at the end of a run of minutes, while the model is still improving quickly;
            the average then mixes in older, weaker weights and can score below the last checkpoint alone. The
            differences, measured:
            """
        ),
        code(
            """
            averaged_bleu = scores[f"averaged, beam {NUM_BEAMS}, alpha {LENGTH_PENALTY}"][0]
            last_bleu = scores[f"last checkpoint ({last_checkpoint.name}), beam"][0]
            print(f"beam search over greedy: {averaged_bleu - scores['averaged, greedy'][0]:+.2f} BLEU; "
                  f"averaging the last 5 checkpoints over the last one alone: {averaged_bleu - last_bleu:+.2f} BLEU")
            """
        ),
        code(
            """
            BEAM = f"averaged, beam {NUM_BEAMS}, alpha {LENGTH_PENALTY}"
            for i in range(4):
                print(f"source:    {sources[i]}\\nreference: {references[i][0]}\\nbeam:      {translations[BEAM][i]}\\n"
                      f"greedy:    {translations['averaged, greedy'][i]}\\n")
            """
        ),
        md(
            """
            ## The length penalty

            Beam search compares partial translations by their total log-probability, a sum of negative numbers,
            so longer translations always look worse and beam search favours stopping early. The length penalty
            divides each score by length^α (Hugging Face's form; the paper uses Google's (5 + length)^α / 6^α,
            which behaves alike): α = 0 is no correction, larger α lets longer candidates win. The package's
            `vaswani-text2text` pipeline passes these arguments to `generate()`:
            """
        ),
        code(
            """
            from transformers import pipeline

            translate = pipeline("vaswani-text2text", model=str(folder))
            sentences = ["God saw the light, and saw that it was good.", "The earth was formless and empty.",
                         "Jesus wept."]
            for alpha in (0.0, 0.6, 2.0):
                outputs = translate(sentences, num_beams=4, length_penalty=alpha, max_new_tokens=64)
                lengths = [len(tokenizer.tokenize(o["generated_text"])) for o in outputs]
                print(f"alpha {alpha}: mean length {sum(lengths) / len(lengths):.1f} tokens")
                for output in outputs:
                    print("   ", output["generated_text"])
            """
        ),
        md(
            """
            The package's README reports the same recipe on a wider model trained about ten times longer
            (`benchmarks/quality.py`); the scores above are what a few CPU minutes buy. Notebook 05 opens a model
            like this one and looks at where its attention goes.
            """
        ),
        closing_cell(),
    ]


# ======================================================================================================================
# 05 Inside attention
# ======================================================================================================================
def inside_attention():
    return [
        md(
            """
            # 05 · Inside attention: what the heads look at, and how positions are encoded

            Attention is the one operation that lets a Transformer move information between positions. Section
            3.2 of the paper defines it:

            - **scaled dot-product attention** (3.2.1): each position sends a *query*; every position offers a
              *key* and a *value*. The weights are softmax(QKᵀ / √d_k): one row per query, each row a probability
              distribution over the keys (non-negative, summing to 1). The output is the weighted mean of the
              values.
            - **multi-head attention** (3.2.2): h heads do this in parallel on different learned projections,
              so each head can look for something different.
            - three uses (3.2.3): **self-attention** in the encoder (every word looks at every word), **masked
              self-attention** in the decoder (only at earlier words) and **encoder-decoder attention** (each
              target word looks at the source sentence).

            Because attention itself ignores order, the model adds a **positional encoding** to its input
            embeddings (3.5); the model here has the paper's sinusoidal positions (the default
            `position_embedding_type="sinusoidal"`). This notebook draws all of these from a real model, with the
            package's helpers: `vaswani.attention_maps` collects the weights, `vaswani.explore` draws them. To have
            something better than random weights to look at, it first trains a small English-to-Spanish model for
            a couple of minutes (notebook 04 explains the recipe).
            """
        ),
        setup_cell("05_inside_attention"),
        code(
            """
            from transformers import Seq2SeqTrainer

            from vaswani import VaswaniForConditionalGeneration, config_from_tokenizer, train_tokenizer
            from vaswani.training import RunSettings, load_table, publish, train
            from vaswani.training.data import BIBLE
            from vaswani.training.tasks import prepare_seq2seq

            STEPS = 30 if FAST else 1200
            rows = load_table(BIBLE, split="train")
            rows = rows.select(range(2000)) if FAST else rows
            tokenizer = train_tokenizer(rows, kind="shared-bpe", vocab_size=1000 if FAST else 8000, model_max_length=128,
                                        text_column=["en", "es"])
            lengths = [max(len(a), len(b)) for a, b in zip(tokenizer(list(rows["en"]))["input_ids"],
                                                           tokenizer(list(rows["es"]))["input_ids"])]
            rows = rows.select([i for i, n in enumerate(lengths) if n <= 32])  # short verses train fastest

            transformers.set_seed(0)
            config = config_from_tokenizer(tokenizer, d_model=64 if FAST else 128, num_heads=4,
                                           d_ff=256 if FAST else 512, num_hidden_layers=2, dropout=0.1,
                                           max_position_embeddings=128)
            model = VaswaniForConditionalGeneration(config)
            data = prepare_seq2seq(rows, None, tokenizer, model, "en", "es", 32)
            settings = RunSettings(output=OUT / "attention-en-es", steps=STEPS, batch_size=32, paper_recipe=True,
                                   lr_scale=0.5, logging_steps=max(STEPS // 6, 1), quiet=True, seed=0)
            started = time.perf_counter()
            trainer, _ = train(model, tokenizer, data, settings, trainer_class=Seq2SeqTrainer)
            folder = publish(trainer, OUT / "attention-en-es", overwrite=True)
            print(f"{len(rows):,} verse pairs, {STEPS} steps, trained in {time.perf_counter() - started:.0f} s")
            """
        ),
        md(
            """
            ## Asking for the attention weights

            The fast attention kernels (`sdpa`, flash) never materialise the weight matrix, so they cannot return
            it. The plain implementation of equation 1, `eager` (`eager_attention_forward`), does, and with
            `output_attentions=True` the model returns, for every layer, a tensor of shape (batch, heads, queries,
            keys). `vaswani.attention_maps(model, inputs, tokenizer)` does both for one call: it switches the model
            to eager attention, runs it once, and gives back the implementation it had. Its result holds
            `weights[kind]`, shaped (layers, batch, heads, queries, keys), for the three kinds of attention
            (`"encoder"`, `"decoder"`, `"cross"`), and the tokens of the rows and columns.

            We translate one sentence with beam search, then give the model the source and its own translation to
            collect all three kinds of attention.
            """
        ),
        code(
            """
            from transformers import AutoModelForSeq2SeqLM

            model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()  # the default, fast implementation
            sentence = "And God said, Let there be light: and there was light."
            source = tokenizer(sentence, return_tensors="pt")
            translation = model.generate(**source, max_new_tokens=40, num_beams=4, length_penalty=0.6)
            print("source:     ", sentence)
            print("translation:", tokenizer.decode(translation[0], skip_special_tokens=True))

            maps = vaswani.attention_maps(model, {**source, "decoder_input_ids": translation}, tokenizer=tokenizer)
            print("attention implementation after the call:", model.config._attn_implementation)
            for kind, weights in maps.weights.items():
                print(f"{kind:8s} {tuple(weights.shape)} (layers, batch, heads, queries, keys); rows sum to "
                      f"{weights.sum(-1).mean():.3f}")
            """
        ),
        code(
            """
            %matplotlib inline
            from vaswani.explore import plot_cross_attention, plot_heads, plot_positional_encodings, unpadded

            plot_heads(maps, "encoder")  # a figure as the cell's last value is drawn below it
            """
        ),
        md(
            """
            **What this shows.** Each small square is one head of one encoder layer (counted from 0, as in
            `maps.head(layer, head)`). Row *i* is the distribution of attention of source token *i* over all
            source tokens: the softmax of equation 1 (paper 3.2.1), so every row sums to 1 and a bright cell means
            "token *i* takes much of its new value from this token". The encoder is not masked, so any token may
            look anywhere, left or right.

            Things to look for: a bright **diagonal** (a token attending to itself), a band just **beside** the
            diagonal (attending to the previous or next token, a way to read local word order), and **vertical
            stripes** (many tokens looking at the same token, often punctuation or the end-of-sentence `</s>`,
            which heads use as a "nothing in particular" place to park their attention). Different heads in the
            same layer do look different: that is the point of multi-head attention (3.2.2), several
            relationships read in parallel. The table below measures these patterns for every head, so you do not
            have to judge by eye.
            """
        ),
        code(
            """
            def describe_heads(maps, kind):
                weights, tokens, _ = unpadded(maps, kind)  # (layers, heads, queries, keys), padding left out
                special = [i for i, t in enumerate(tokens) if t in tokenizer.all_special_tokens]
                n = len(tokens)
                print(f"{'':16s} {'self':>6s} {'previous':>9s} {'next':>6s} {'special':>8s} {'spread':>7s}")
                for layer in range(weights.shape[0]):
                    for head in range(weights.shape[1]):
                        a = weights[layer, head]
                        entropy = -(a.clamp_min(1e-9).log() * a).sum(-1).mean() / torch.log(torch.tensor(float(n)))
                        print(f"layer {layer}, head {head}  {a.diagonal().mean():6.2f} "
                              f"{a.diagonal(-1).mean() if n > 1 else 0:9.2f} {a.diagonal(1).mean() if n > 1 else 0:6.2f} "
                              f"{a[:, special].sum(-1).mean() if special else 0:8.2f} {entropy:7.2f}")


            describe_heads(maps, "encoder")
            """
        ),
        md(
            """
            Columns: the mean attention a token gives to **itself**, to the **previous** and to the **next**
            token, the total it gives to **special** tokens (`</s>`), and the **spread** of the distribution
            (entropy divided by its maximum: 1 means attention spread evenly over all tokens, close to 0 means
            focused on one).

            ## Masked self-attention in the decoder

            The decoder writes the translation one token at a time, so while training it must not peek at the
            words it has still to predict. Section 3.2.3 masks those positions out by setting their scores to
            −∞ before the softmax: their weight becomes exactly 0. That is the black upper triangle below, the same
            in every head and layer. Row *i* is the decoder's state after writing token *i* (the first row is the
            start token `<s>`), and it may look only at tokens up to *i*.
            """
        ),
        code(
            """
            display(plot_heads(maps, "decoder"))
            weights, target_tokens, _ = unpadded(maps, "decoder")
            upper = torch.triu(torch.ones(len(target_tokens), len(target_tokens)), diagonal=1).bool()
            print(f"largest weight on a future token in any head or layer: {float(weights[..., upper].max())}")
            """
        ),
        md(
            """
            ## Encoder-decoder attention: where the translation looks in the source

            In the third sub-layer of each decoder layer (3.2.3), the queries come from the decoder and the keys
            and values from the encoder's output. Row *i* therefore says which **English** tokens the model
            consulted when choosing the **Spanish** token after target token *i*. (The rows are the decoder's
            inputs: row `<s>` chooses the first Spanish word, row *Y* chooses the word after *Y*.) This is the
            mechanism that replaced the alignment models of earlier translation systems: nobody told the model
            which words correspond, it learned to look where it helps.

            A trained model tends to sweep roughly along a diagonal, since English and Spanish word orders are
            similar, and to jump where they differ; a model trained for only minutes, like ours, shows this
            only in some heads and blurs it in others. The second figure averages the heads of each layer
            (`plot_cross_attention` draws into the axes it is given); the printed line finds, for each Spanish
            token, the English token that received the most attention in the last layer.
            """
        ),
        code(
            """
            import matplotlib.pyplot as plt

            display(plot_heads(maps, "cross", cmap="magma"))

            layers = maps.num_layers["cross"]
            fig, axes = plt.subplots(1, layers, figsize=(6.5 * layers, 5.5), layout="constrained")
            for layer, ax in enumerate(axes):
                plot_cross_attention(maps, layer=layer, ax=ax)  # head=None: the mean of the heads
            plt.show()

            weights, target_tokens, source_tokens = unpadded(maps, "cross")
            last = weights[-1].mean(0)
            pairs = [f"{target_tokens[i + 1]}<-{source_tokens[int(last[i].argmax())]}" for i in range(len(target_tokens) - 1)]
            print("most attended English token when writing each Spanish token (last layer):")
            print("  ".join(pairs))
            """
        ),
        md(
            """
            The same maps open in [bertviz](https://github.com/jessevig/bertviz)'s interactive views when it is
            installed (`pip install bertviz`): `vaswani.explore.head_view(maps)` and `model_view(maps)`.

            ## Additive attention, the other compatibility function of 3.2.1

            The paper names two common ways to score a query against a key: **dot-product** attention, its own
            (with the 1/√d_k scaling), and **additive** attention (Bahdanau et al.), a small feed-forward network
            score(q, k) = vᵀ tanh(W_q q + W_k k). "While the two are similar in theoretical complexity, dot-product
            attention is much faster and more space-efficient in practice", since it is one matrix product, while
            additive attention needs the d_k tanh units of every (query, key) pair. The config field
            `attention_scores="additive"` builds the second kind. Below we take the trained model, swap its scores
            for additive ones (the projections W_q, W_k stay; only the vector v of each head is new), train it
            briefly, and put the last layer's cross-attention of the two side by side on the same sentence.
            """
        ),
        code(
            """
            additive_config = model.config.to_dict() | {"attention_scores": "additive"}
            additive = VaswaniForConditionalGeneration(type(model.config).from_dict(additive_config))
            missing, unexpected = additive.load_state_dict(model.state_dict(), strict=False)
            print("new parameters:", sorted({name.rsplit(".", 1)[-1] for name in missing}), "| unused:", unexpected)
            print("attention implementation:", additive.config._attn_implementation)

            FINE_STEPS = 5 if FAST else STEPS // 6
            settings = RunSettings(output=OUT / "attention-additive", steps=FINE_STEPS, batch_size=32,
                                   paper_recipe=True, lr_scale=0.5, logging_steps=FINE_STEPS, quiet=True, seed=0)
            train(additive, tokenizer, data, settings, trainer_class=Seq2SeqTrainer)

            # The two forwards timed back to back on one batch (32 sentences of 48 tokens), best of 5: a training
            # run's clock would also count whatever else the machine did meanwhile.
            import timeit

            ids = torch.randint(5, len(tokenizer), (32, 48))
            batch = {"input_ids": ids, "decoder_input_ids": ids}
            with torch.no_grad():
                for name, scored in (("scaled dot-product", model.eval()), ("additive", additive.eval())):
                    best = min(timeit.repeat(lambda: scored(**batch), number=3, repeat=5)) / 3
                    print(f"{name:18s} on {scored.config._attn_implementation:8s} {best * 1e3:6.1f} ms per forward")

            additive_maps = vaswani.attention_maps(additive.eval(), {**source, "decoder_input_ids": translation},
                                                   tokenizer=tokenizer)
            fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), layout="constrained")
            plot_cross_attention(maps, ax=left)
            plot_cross_attention(additive_maps, ax=right)
            left.set_title("scaled dot-product: softmax(q·k / √d_k)")
            right.set_title(f"additive: softmax(vᵀ tanh(q + k)), after {FINE_STEPS} more steps")
            plt.show()
            """
        ),
        md(
            """
            Both rows still sum to 1 and both models attend with the same projections, so the pictures are
            comparable cell for cell. What differs is the function of q and k: the dot product can grow without
            bound as q and k line up (hence the 1/√d_k, or the softmax saturates), while tanh bounds each of the
            d_k units, so additive scores are tamer. The cost is in the timing above: additive attention builds a
            (queries x keys x d_k) tensor per head, the dot product one matrix product (and runs on sdpa's fused
            kernel).

            ## The positional encoding (paper 3.5)

            Attention compares every query with every key the same way wherever they stand, so without help the
            model would read "dog bites man" and "man bites dog" identically. The paper adds to each input
            embedding a vector that depends only on the position:

            PE(pos, 2i) = sin(pos / 10000^(2i/d_model)),  PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model)).

            Each pair of dimensions is a sine and a cosine of one frequency; the frequencies fall geometrically
            from one cycle every 2π positions (the first pair) to one cycle every 10000·2π positions (the last).
            In the heat map below each row is a position and each column a dimension: the left columns flicker
            quickly as the position grows, the right columns barely change, like the fast and slow hands of a
            clock. Together they give every position a distinct pattern, and since nothing was learned, it
            works for positions longer than any seen in training (3.5). The function is
            `vaswani.modeling.modeling_vaswani.sinusoidal_positions`, the one the model uses, and
            `plot_positional_encodings(model)` draws the model's own (its learned table for learned positions).
            """
        ),
        code(
            """
            from vaswani.modeling.modeling_vaswani import sinusoidal_positions

            D, POSITIONS = model.config.d_model, 100
            table = sinusoidal_positions(torch.arange(POSITIONS), D)
            print("table shape:", tuple(table.shape), "values in", (round(float(table.min()), 3), round(float(table.max()), 3)))

            fig, (left, right) = plt.subplots(1, 2, figsize=(15, 4.6), gridspec_kw={"width_ratios": [1.3, 1]},
                                              layout="constrained")
            plot_positional_encodings(model, length=POSITIONS, ax=left)
            for dimension in (0, D // 8, D // 4, 3 * D // 8, 3 * D // 4):
                right.plot(table[:, dimension].numpy(), label=f"dimension {dimension} (sin)")
            right.set(xlabel="position", ylabel="value", title="a few columns: lower dimensions oscillate faster")
            right.legend(fontsize=8, loc="lower left")
            plt.show()
            """
        ),
        md(
            """
            The paper chose sinusoids because "for any fixed offset k, PE(pos+k) can be represented as a linear
            function of PE(pos)": moving k positions turns each sine-cosine pair by a fixed angle (ω_i · k for
            the pair of frequency ω_i), whatever the starting position. One consequence is visible in the dot
            products between encodings (below): the similarity of two positions depends only on **how far apart**
            they are, not on where they are, so every diagonal of the matrix is constant; it is largest on the
            diagonal and, roughly, falls off with distance. The printed check builds the linear map for k = 5
            (one rotation per pair) and applies it to a thousand positions.
            """
        ),
        code(
            """
            similarity = table @ table.T
            fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6))
            image = left.imshow(similarity.numpy(), cmap="viridis")
            left.set(xlabel="position", ylabel="position", title="PE(p) · PE(q): depends only on |p - q|")
            fig.colorbar(image, ax=left)
            right.plot(similarity[50].numpy())
            right.axvline(50, color="gray", ls=":")
            right.set(xlabel="position q", ylabel="PE(50) · PE(q)", title="one row: a peak at q = 50, symmetric decay")
            fig.tight_layout()
            plt.show()

            import math

            offset = 5
            frequencies = torch.exp(torch.arange(0, D, 2, dtype=torch.float64) * (-math.log(10000.0) / D))
            shift = torch.zeros(D, D, dtype=torch.float64)  # one 2x2 rotation per (sin, cos) pair
            for i, frequency in enumerate(frequencies.tolist()):
                c, s = math.cos(frequency * offset), math.sin(frequency * offset)
                shift[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
            many = sinusoidal_positions(torch.arange(1000), D).double()
            error = (many[:-offset] @ shift - many[offset:]).abs().max()
            diagonal_spread = max(float(similarity.diagonal(k).std()) for k in range(0, 20))
            print(f"dot products along each of the first 20 diagonals vary by at most {diagonal_spread:.1e} (std)")
            print(f"PE(pos) @ rotation = PE(pos + {offset}) for positions 0-994: largest error {error:.1e}")
            """
        ),
        md(
            """
            A last check: `eager` and the default fused kernel (`sdpa`) compute the same function, equation 1;
            only the order of the floating-point operations differs. So the maps, drawn on eager attention,
            describe the model that actually translates. `vaswani.explore.eager_attention(model)` is the switch
            `attention_maps` uses, as a `with` block:
            """
        ),
        code(
            """
            from vaswani.explore import eager_attention

            with torch.no_grad():
                fast_logits = model(**source, decoder_input_ids=translation).logits
                with eager_attention(model):
                    eager_logits = model(**source, decoder_input_ids=translation).logits
                    again = model.generate(**source, max_new_tokens=40, num_beams=4, length_penalty=0.6)
            print(f"{model.config._attn_implementation} vs eager: largest logit difference "
                  f"{(fast_logits - eager_logits).abs().max():.1e}; same translation: {torch.equal(again, translation)}")
            """
        ),
        closing_cell(),
    ]


# ======================================================================================================================
# 06 Sharing
# ======================================================================================================================
def sharing():
    return [
        md(
            """
            # 06 · Sharing a model: Hub-ready folders, remote code, the model card, `push_to_hub`

            A model is only useful if others can load it. Every Vaswani model's `save_pretrained` writes a folder
            that is ready for the Hugging Face Hub as it is:

            - the weights (`model.safetensors`) and `config.json`, plus `generation_config.json` for the heads
              that generate;
            - the **model code itself** as flat modules that import only torch and transformers, with an
              `auto_map` in `config.json` naming the class for each Auto class: anyone can load the folder with
              `trust_remote_code=True` **without installing this package**;
            - `README.md`, the **model card**, written from the model's own facts (shape, sizes, training data,
              results).

            This notebook trains a small character-level model with the package's command line, looks inside
            the folder, loads it in a separate Python process where `import vaswani` fails, shows the model
            card, and explains the upload.
            """
        ),
        setup_cell("06_sharing", offline=False),
        md(
            """
            ## A model worth sharing

            `vaswani.cli.main` is the `vaswani` command line as a function. `pretrain` trains, evaluates on the
            held-out tenth of Tiny Shakespeare and records what it did (data, procedure, results) in
            `config.model_card_data`, which the model card is rendered from. The model has learned positions
            (`--positions learned`): 129 of them, for the 129 characters of each training block (128
            predictions).
            """
        ),
        code(
            """
            from vaswani import cli
            from vaswani.training.data import SHAKESPEARE

            STEPS = 20 if FAST else 400
            tokenizer_folder, folder = Path(os.path.relpath(OUT / "tokenizer")), Path(os.path.relpath(OUT / "shakespeare-char"))
            assert cli.main(["train-tokenizer", "--kind", "char", "--data", str(SHAKESPEARE), "--max-length", "129",
                             "--output", str(tokenizer_folder), "--overwrite"]) == 0
            assert cli.main([
                "pretrain", "--objective", "clm", "--tokenizer", str(tokenizer_folder), "--data", str(SHAKESPEARE),
                "--validation-fraction", "0.1", "--block-size", "128", "--d-model", "64", "--num-heads", "4",
                "--layers", "2", "--d-ff", "256", "--positions", "learned", "--activation", "gelu", "--norm-first",
                "--no-embedding-scale", "--dropout", "0", "--steps", str(STEPS), "--batch-size", "16", "--lr", "2e-3",
                "--lr-scheduler", "cosine", "--warmup", "0.1", "--logging-steps", str(max(STEPS // 4, 1)), "--quiet",
                "--output", str(folder), "--overwrite",
            ]) == 0
            """
        ),
        md(
            """
            ## What is in the folder
            """
        ),
        code(
            """
            import json

            for path in sorted(folder.iterdir()):
                print(f"{path.name:28s} {path.stat().st_size:>10,d} bytes")
            config_json = json.loads((folder / "config.json").read_text())
            print("\\narchitectures:", config_json["architectures"])
            print("auto_map:")
            for auto, target in config_json["auto_map"].items():
                print(f"   {auto:36s} -> {target}")
            print("custom_pipelines:", list(config_json["custom_pipelines"]))
            """
        ),
        md(
            """
            The code files are the package's own modules, copied flat (`from ..configuration.configuration_vaswani
            import` became `from .configuration_vaswani import`), because transformers copies a folder's remote
            code one level deep. `tokenizer.json` and `tokenizer_config.json` are a standard fast tokenizer, which
            `AutoTokenizer` loads without any remote code.

            ## Loading where the package is not installed

            Here, with `vaswani` imported, the Auto classes use the registered classes. To prove that the folder
            stands on its own, we start a **fresh Python process** in which `import vaswani` is made to fail
            (`sys.modules["vaswani"] = None`), load the folder there with `trust_remote_code=True`, and compare
            its logits and its greedy continuation with the ones computed here. (`tests/test_hub.py` does the
            same for every head.)
            """
        ),
        code(
            """
            import subprocess
            import sys
            import textwrap

            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(folder)
            model = AutoModelForCausalLM.from_pretrained(folder).eval()
            prompt = "ROMEO:\\n"
            inputs = tokenizer(prompt, return_tensors="pt")
            with torch.no_grad():
                logits = model(**inputs).logits
            continuation = tokenizer.decode(model.generate(**inputs, max_new_tokens=60, do_sample=False)[0])
            torch.save(logits, OUT / "logits-here.pt")
            print("here:", type(model).__module__ + "." + type(model).__name__)

            script = textwrap.dedent(f'''
                import sys
                sys.modules["vaswani"] = None  # any import of the package now fails
                try:
                    import vaswani
                    raise SystemExit("vaswani is importable: this would prove nothing")
                except ImportError:
                    pass
                import json, torch, transformers
                transformers.logging.set_verbosity_error()
                from transformers import AutoModelForCausalLM, AutoTokenizer
                folder = {str(folder)!r}
                tokenizer = AutoTokenizer.from_pretrained(folder)
                model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
                inputs = tokenizer({prompt!r}, return_tensors="pt")
                with torch.no_grad():
                    torch.save(model(**inputs).logits, {str(OUT / "logits-there.pt")!r})
                text = tokenizer.decode(model.generate(**inputs, max_new_tokens=60, do_sample=False)[0])
                result = {{"class": type(model).__module__ + "." + type(model).__name__, "text": text}}
                with open({str(OUT / "remote-result.json")!r}, "w") as handle:
                    json.dump(result, handle)
            ''')
            environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HF_HUB_OFFLINE": "1",
                           "HF_MODULES_CACHE": str(OUT / "modules"), "TOKENIZERS_PARALLELISM": "false"}
            result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                                    timeout=300)
            assert result.returncode == 0, result.stderr[-3000:]
            there = json.loads((OUT / "remote-result.json").read_text())
            print("there:", there["class"])
            print("logits identical:", torch.equal(logits, torch.load(OUT / "logits-there.pt")))
            print("greedy continuation identical:", there["text"] == continuation)
            print(continuation)
            """
        ),
        md(
            """
            The class name is the same, but the module differs: here it is the installed package
            (`vaswani.modeling...`), there it is `transformers_modules...`, the code transformers copied out of
            the folder. The same folder also declares the package's pipelines (`custom_pipelines`), so
            `pipeline("vaswani-text2text", model=folder, trust_remote_code=True)` works without the package too.

            ## The model card

            `README.md` is what the Hub shows on the model's page. Its YAML header carries the machine-readable
            metadata (license, tags, pipeline tag, datasets, metrics and a `model-index` with the results, which
            the Hub turns into an evaluation widget); the body is for people. `huggingface_hub.ModelCard` parses
            it: the header first, then the rendered body.
            """
        ),
        code(
            """
            from huggingface_hub import ModelCard
            from IPython.display import Markdown, display

            card = ModelCard.load(folder / "README.md")
            print(card.data.to_yaml())
            display(Markdown(card.text))
            """
        ),
        md(
            """
            ## Uploading: `push_to_hub`

            `model.push_to_hub(repo_id)` uploads exactly the folder `save_pretrained` writes (weights, config,
            code and card; the generic transformers method would replace the card with an empty one), and
            `tokenizer.push_to_hub(repo_id)` adds the tokenizer files. From a shell, `vaswani push --model FOLDER
            --repo-id you/name` uploads a finished folder as it is, tokenizer included.

            An upload needs a network and a token with write access. The next cell therefore does nothing unless
            `HF_TOKEN` is set (and `HF_HUB_OFFLINE` is not): in the committed run, and in the test suite, it only
            prints what it would do. Set `HF_TOKEN` and `VASWANI_REPO_ID` (e.g. `your-name/shakespeare-char`)
            before starting Jupyter to upload for real.
            """
        ),
        code(
            """
            repo_id = os.environ.get("VASWANI_REPO_ID", "your-name/shakespeare-char")
            if os.environ.get("HF_TOKEN") and os.environ.get("HF_HUB_OFFLINE") != "1":
                model.push_to_hub(repo_id, commit_message="Upload a character-level Shakespeare model", tags=["shakespeare"])
                tokenizer.push_to_hub(repo_id)
                print(f"uploaded: https://huggingface.co/{repo_id}")
            else:
                print(f"No HF_TOKEN (or offline): not uploading. With a token this cell would run\\n"
                      f"    model.push_to_hub({repo_id!r}); tokenizer.push_to_hub({repo_id!r})\\n"
                      f"and anyone could then load the model with\\n"
                      f"    AutoModelForCausalLM.from_pretrained({repo_id!r}, trust_remote_code=True)")
            """
        ),
        closing_cell(),
    ]


# ======================================================================================================================
# 07 Vision
# ======================================================================================================================
def vision():
    return [
        md(
            """
            # 07 · Attention in vision: a small ViT, where it looks, and captions

            The paper's Transformer reads a sequence of vectors; nothing in it says they must be words. The Vision
            Transformer (Dosovitskiy et al. 2021) cuts an image into P x P patches, projects each patch to d_model
            (a convolution with stride P), puts a learned [CLS] vector in front and adds positions: the encoder of
            section 3.1 does the rest, and a linear layer on the final [CLS] state classifies the image. Here we
            train one on scikit-learn's 8x8 digits (they ship with it: no download), draw where its attention falls
            on the image, patch by patch and head by head (the "spatial attention" of the vision literature), then
            give the same encoder the paper's decoder and train it to caption strips of three digits ("three one
            four"), and look at which patches each generated word attended to.

            A config with `image_size` makes the encoder read pixels; everything else is the configuration the
            other notebooks use.
            """
        ),
        setup_cell("07_vision"),
        code(
            """
            import matplotlib.pyplot as plt
            import numpy as np

            from vaswani.training.images import DIGIT_WORDS, digit_strips, digits

            torch.set_num_threads(1)  # models this small run faster on one thread than on two that wait on each other
            train_digits, test_digits = digits("train"), digits("test")
            print(train_digits)
            print(f"{len(train_digits):,} training and {len(test_digits):,} test digits (a fixed, stratified split)")
            figure, axes = plt.subplots(1, 8, figsize=(8, 1.3))
            for axis, row in zip(axes, test_digits.select(range(8))):
                axis.imshow(row["image"]); axis.set_title(row["label"]); axis.axis("off")
            plt.show()
            """
        ),
        md(
            """
            ## A ViT for digits

            An 8x8 image in patches of 2x2 is a sequence of 16 patches, plus [CLS]: 17 positions, learned. The image
            processor is transformers' own ViT processor at the model's size (`vaswani.image_processor_for`): it
            resizes, rescales to [0, 1] and normalises to [-1, 1], and it is saved beside the model so that
            `pipeline("image-classification", model=folder)` finds it.
            """
        ),
        code(
            """
            from vaswani import VaswaniConfig, VaswaniForImageClassification, image_processor_for
            from vaswani.training import RunSettings, publish, train
            from vaswani.training.evaluation import classification_metrics, predict_logits
            from vaswani.training.tasks import prepare_image_classification

            transformers.set_seed(0)
            config = VaswaniConfig(image_size=8, patch_size=2, num_channels=3, d_model=64, num_heads=4, d_ff=128,
                                   num_hidden_layers=4, norm_first=True, activation_function="gelu",
                                   position_embedding_type="learned", dropout=0.1, num_labels=10, vocab_size=1,
                                   pad_token_id=None, bos_token_id=None, eos_token_id=None)
            model = VaswaniForImageClassification(config)
            processor = image_processor_for(config)
            data = prepare_image_classification(train_digits, test_digits, processor, "image", "label")
            model.config.id2label = dict(enumerate(data.label_names))
            model.config.label2id = {name: i for i, name in enumerate(data.label_names)}
            settings = RunSettings(output=OUT / "digits-vit", steps=20 if FAST else None, epochs=60, batch_size=32,
                                   learning_rate=1e-3, lr_scheduler="cosine", warmup_ratio=0.1, weight_decay=0.05,
                                   logging_steps=1000, quiet=True, seed=0)
            started = time.perf_counter()
            trainer, _ = train(model, processor, data, settings)
            classifier_folder = publish(trainer, OUT / "digits-vit", overwrite=True)
            logits, labels = predict_logits(trainer, data.eval)
            scores = classification_metrics(logits.argmax(-1), labels, 10)
            print(f"{sum(p.numel() for p in model.parameters()):,} parameters, trained in "
                  f"{time.perf_counter() - started:.0f} s; test accuracy {scores['accuracy']:.3f}")
            """
        ),
        md(
            """
            A baseline measured here, on the same split: logistic regression on the 64 raw pixels.
            """
        ),
        code(
            """
            from sklearn.linear_model import LogisticRegression

            def flat(table):
                return np.stack([np.asarray(image.convert("L"), dtype=np.float64).ravel() / 255 for image in table["image"]])

            baseline = LogisticRegression(max_iter=2000).fit(flat(train_digits), np.array(train_digits["label"]))
            print(f"logistic regression: test accuracy {baseline.score(flat(test_digits), np.array(test_digits['label'])):.3f}")

            classify = transformers.pipeline("image-classification", model=str(classifier_folder))
            image = test_digits[0]["image"]
            print(f"the pipeline on test digit {test_digits[0]['label']}:", classify(image, top_k=3))
            """
        ),
        md(
            """
            ## Where the ViT looks

            `vaswani.attention_maps` returns every layer's and head's weights; for an image its keys are [CLS] and
            the patches `p(row, col)`. `plot_patch_attention` takes one query's row (the [CLS] token's, the one the
            classifier reads) and lays its weights over the patch grid on the image: each cell is one 2x2 patch, the
            brighter the more that head attended to it. The [CLS] key itself is not a patch; its weight is in the
            title. Early layers tend to spread their attention; later ones concentrate on the strokes.
            """
        ),
        code(
            """
            from vaswani.explore import plot_patch_attention

            classifier = transformers.AutoModelForImageClassification.from_pretrained(classifier_folder).eval()
            pixel_values = processor(image, return_tensors="pt")["pixel_values"]
            maps = vaswani.attention_maps(classifier, {"pixel_values": pixel_values})
            print("keys:", maps.tokens["encoder"][0][:6], "...", "grid:", maps.patch_grid)
            for layer in (0, config.num_encoder_layers - 1):
                plot_patch_attention(maps, image, layer=layer)
                plt.show()
            """
        ),
        md(
            """
            ## Captions: the same encoder, and the paper's decoder

            A captioner is the paper's encoder-decoder with an encoder that reads pixels: the decoder's
            encoder-decoder attention (3.2.3) now looks at patches instead of source words. The data is made from
            the digits above, so anyone can check it: strips of three digits side by side, captioned with their
            words; training strips use training digits only, test strips test digits only. A strip is 8 x 24
            pixels; the image processor stretches it to the model's 24 x 24, and patches of 8 x 8 cut it into three
            columns of three patches, one column per digit. The tokenizer is learned from the training captions
            (ten words and the special tokens).
            """
        ),
        code(
            """
            from transformers import Seq2SeqTrainer

            from vaswani import VaswaniForConditionalGeneration, config_from_tokenizer, train_tokenizer
            from vaswani.training.evaluation import evaluate_captioning
            from vaswani.training.tasks import prepare_captioning

            train_strips = digit_strips(train_digits, 500 if FAST else 10_000, seed=0)
            test_strips = digit_strips(test_digits, 100 if FAST else 500, seed=0)
            print(train_strips[0]["caption"], "|", test_strips[0]["caption"])
            words = train_tokenizer(list(train_strips["caption"]), kind="wordpiece", vocab_size=64, model_max_length=16)

            transformers.set_seed(0)
            caption_config = config_from_tokenizer(
                words, image_size=24, patch_size=8, num_channels=3, d_model=64, num_heads=4, d_ff=128,
                num_hidden_layers=2, norm_first=True, activation_function="gelu", position_embedding_type="learned",
                dropout=0.0, max_position_embeddings=16)
            captioner = VaswaniForConditionalGeneration(caption_config)
            strip_processor = image_processor_for(caption_config)
            data = prepare_captioning(train_strips, test_strips, words, strip_processor, "image", "caption", 8)
            settings = RunSettings(output=OUT / "strips-captioner", steps=20 if FAST else None, epochs=10,
                                   batch_size=32, learning_rate=2e-3, lr_scheduler="cosine", warmup_ratio=0.05,
                                   weight_decay=0.05, logging_steps=1000, quiet=True, seed=0)
            started = time.perf_counter()
            trainer, _ = train(captioner, words, data, settings, trainer_class=Seq2SeqTrainer)
            captioner_folder = publish(trainer, OUT / "strips-captioner", overwrite=True, companions=[strip_processor])
            scores, examples = evaluate_captioning(captioner, words, strip_processor, test_strips, "image", "caption",
                                                   max_new_tokens=8)
            print(f"{sum(p.numel() for p in captioner.parameters()):,} parameters, trained in "
                  f"{time.perf_counter() - started:.0f} s; on {len(test_strips)} held-out strips: exact match "
                  f"{scores['exact_match']:.3f}, word accuracy {scores['word_accuracy']:.3f}")
            """
        ),
        md(
            """
            The folder holds the model, its tokenizer and its image processor, so the family's image-to-text
            pipeline (transformers 5 replaced its own with one that needs a text prompt) captions from it directly,
            and `generate()` offers the usual searches.
            """
        ),
        code(
            """
            caption = transformers.pipeline("vaswani-image-to-text", model=str(captioner_folder))
            strip = test_strips[0]["image"]
            print("reference:", test_strips[0]["caption"])
            print("greedy:   ", caption(strip, max_new_tokens=8)[0]["generated_text"])
            print("beam 4:   ", caption(strip, max_new_tokens=8, num_beams=4)[0]["generated_text"])
            plt.figure(figsize=(3, 1)); plt.imshow(strip); plt.axis("off"); plt.show()
            """
        ),
        md(
            """
            ## Which patches each word looked at

            The decoder's cross-attention has one row per target position: position i is where the model chose
            token i + 1, looking at the patches. `plot_patch_attention(..., kind="cross", query=i)` lays that row
            (one head here) on the strip. (The WordPiece tokenizer puts its `[CLS]` in front of every caption, so
            the first position chooses `[CLS]` and the words come from the next three.) If the captioner reads
            left to right, the position choosing the first word looks at the first column, the next at the
            second, and so on: the table below sums each position's weights (averaged over the heads) per digit
            column, over 20 held-out strips, for both decoder layers; what a row lacks went to [CLS].
            """
        ),
        code(
            """
            model = transformers.AutoModelForImageTextToText.from_pretrained(captioner_folder).eval()
            pixel_values = strip_processor(strip, return_tensors="pt")["pixel_values"]
            ids = model.generate(pixel_values=pixel_values, max_new_tokens=8)
            maps = vaswani.attention_maps(model, {"pixel_values": pixel_values, "decoder_input_ids": ids})
            said = words.convert_ids_to_tokens(ids[0])
            chooses_a_word = [i for i in range(len(said) - 1) if said[i + 1] in DIGIT_WORDS]  # position i -> token i + 1
            print("generated:", said, "| positions choosing words:", chooses_a_word)
            shown = chooses_a_word or list(range(min(3, len(said) - 1)))  # an untrained model may say no word at all
            layer = caption_config.num_decoder_layers - 1
            figure, axes = plt.subplots(1, len(shown), figsize=(3 * len(shown), 3.2), squeeze=False)
            for position, axis in zip(shown, axes[0]):
                plot_patch_attention(maps, strip, layer=layer, head=0, query=position, kind="cross", ax=axis)
                axis.set_title(f"choosing {said[position + 1]!r}")
            plt.show()

            from vaswani.explore import patch_attention

            columns, used = {layer: torch.zeros(3, 3) for layer in range(caption_config.num_decoder_layers)}, 0
            for row in test_strips.select(range(20)):
                pixels = strip_processor(row["image"], return_tensors="pt")["pixel_values"]
                generated = model.generate(pixel_values=pixels, max_new_tokens=8)
                tokens = words.convert_ids_to_tokens(generated[0])
                positions = [i for i in range(len(tokens) - 1) if tokens[i + 1] in DIGIT_WORDS][:3]
                if len(positions) < 3:
                    continue  # a caption of fewer than three words has no third row to add
                used += 1
                row_maps = vaswani.attention_maps(model, {"pixel_values": pixels, "decoder_input_ids": generated})
                for layer in columns:
                    for word, position in enumerate(positions):  # (heads, rows, columns) -> mean over heads, sum per column
                        grid = torch.as_tensor(patch_attention(row_maps, layer, None, position, "cross")[0])
                        columns[layer][word] += grid.mean(0).sum(0)
            print(f"{used} of 20 strips captioned with three words or more")
            for layer, table in columns.items():
                print(f"layer {layer}: rows = the 1st, 2nd, 3rd word; columns = the strip's 1st, 2nd, 3rd digit")
                print((table / max(used, 1)).numpy().round(2))
            """
        ),
        closing_cell(),
    ]


NOTEBOOKS = {
    "01_quickstart": quickstart,
    "02_bert_style": bert_style,
    "03_gpt_style": gpt_style,
    "04_translation": translation,
    "05_inside_attention": inside_attention,
    "06_sharing": sharing,
    "07_vision": vision,
}


def build(name: str) -> nbformat.NotebookNode:
    """The notebook `name` without outputs, with stable cell ids (so that a rebuild changes only what changed)."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = NOTEBOOKS[name]()
    for index, cell in enumerate(notebook.cells):
        cell.id = f"{name[:2]}-{index:02d}"
    notebook.metadata = {
        "kernelspec": dict(KERNEL),
        "language_info": {"name": "python", "pygments_lexer": "ipython3"},
    }
    nbformat.validate(notebook)
    return notebook


def execute(notebook, fast: bool = False, output_dir=None, timeout: int = 1800):
    """
    Run `notebook` top to bottom in a fresh `python3` kernel (this interpreter's, e.g. the venv's), with the working
    directory in notebooks/. Raises nbclient's `CellExecutionError` on the first failing cell.
    """
    from nbclient import NotebookClient

    settings = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "MPLBACKEND": "module://matplotlib_inline.backend_inline",  # figures as PNG outputs
                "VASWANI_NOTEBOOK_FAST": "1" if fast else None,
                "VASWANI_NOTEBOOK_OUTPUT": str(output_dir) if output_dir else None}
    saved = {key: os.environ.get(key) for key in settings}
    for key, value in settings.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", record_timing=False,
                                resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
        client.execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return notebook


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--execute", action="store_true", help="run the notebooks and keep their outputs")
    parser.add_argument("--fast", action="store_true", help="with --execute: the quick setting, written to outputs/")
    parser.add_argument("--only", nargs="+", help="notebook names or number prefixes (default: all)")
    parser.add_argument("--update-text", action="store_true",
                        help="copy the markdown cells into the committed notebooks, keeping their outputs (only "
                        "where every code cell is unchanged)")
    args = parser.parse_args(argv)
    names = [n for n in NOTEBOOKS if not args.only or any(n.startswith(o) for o in args.only)]
    target = ROOT / "outputs" / "notebooks-fast" if args.execute and args.fast else NOTEBOOK_DIR
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        notebook = build(name)
        if args.update_text:
            committed = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
            shape = [(c.cell_type, c.source if c.cell_type == "code" else "") for c in notebook.cells]
            if shape != [(c.cell_type, c.source if c.cell_type == "code" else "") for c in committed.cells]:
                print(f"{name}: code cells changed; run it again with --execute", flush=True)
                continue
            for fresh, old in zip(notebook.cells, committed.cells):
                old.source = fresh.source
            nbformat.write(committed, NOTEBOOK_DIR / f"{name}.ipynb")
            print(f"updated the text of {name}.ipynb", flush=True)
            continue
        if args.execute:
            started = time.perf_counter()
            execute(notebook, fast=args.fast)
            seconds = time.perf_counter() - started
            notebook.metadata["vaswani"] = {"fast": args.fast, "run_seconds": round(seconds)}
            print(f"{name}: executed in {seconds:.0f} s", flush=True)
        nbformat.write(notebook, target / f"{name}.ipynb")
        print(f"wrote {os.path.relpath(target / f'{name}.ipynb')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
