"""
Pipelines transformers 5 removed, brought back for Vaswani models under the family's own task names:

    vaswani-text2text            sequence-to-sequence generation (translation, summarisation), returning
                                 [{"generated_text": ...}] per input as the old text2text pipeline did
    vaswani-question-answering   extractive question answering: {"answer", "score", "start", "end"}, with start
                                 and end as character offsets into the context; long contexts are cut into
                                 overlapping windows (doc_stride) and the best span over all windows wins
    vaswani-image-to-text        captions of images by an image encoder-decoder (transformers 5 turned
                                 "image-to-text" into "image-text-to-text", which needs a processor and a prompt):
                                 [{"generated_text": ...}] per image, as the old image-to-text pipeline did

`import vaswani` registers them; a saved folder declares them in `custom_pipelines`, so
`pipeline("vaswani-text2text", model=folder, trust_remote_code=True)` works where the package is not installed.
This module imports nothing beyond torch and transformers.
"""

import torch
from transformers import GenerationConfig, Pipeline
from transformers.image_utils import is_pil_image, load_image


class _GeneratingPipeline(Pipeline):
    """What the two generating pipelines share: `generate()` on the preprocessed inputs, the ids decoded to text."""

    _pipeline_calls_generate = True
    _load_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    @staticmethod
    def _decoding_settings(return_tensors=None, clean_up_tokenization_spaces=None) -> dict:
        params = {"return_tensors": return_tensors, "clean_up_tokenization_spaces": clean_up_tokenization_spaces}
        return {name: value for name, value in params.items() if value is not None}

    def __call__(self, inputs, **kwargs):
        result = super().__call__(inputs, **kwargs)
        # As the old pipelines: a list of inputs with one sequence each gives one dict per input.
        if isinstance(inputs, list) and all(isinstance(r, list) and len(r) == 1 for r in result):
            return [r[0] for r in result]
        return result

    def _forward(self, model_inputs, **generate_kwargs):
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs)
        output = self.model.generate(**model_inputs, **generate_kwargs)
        return {"output_ids": output.sequences if hasattr(output, "sequences") else output}

    def postprocess(self, model_outputs, return_tensors=False, clean_up_tokenization_spaces=None):
        # None: the tokenizer's own setting (forcing True makes a BPE tokenizer warn that it ignores it, every process)
        if return_tensors:
            return [{"generated_token_ids": ids} for ids in model_outputs["output_ids"]]
        return [
            {"generated_text": self.tokenizer.decode(
                ids, skip_special_tokens=True, clean_up_tokenization_spaces=clean_up_tokenization_spaces
            )}
            for ids in model_outputs["output_ids"]
        ]


class VaswaniText2TextPipeline(_GeneratingPipeline):
    """
    Generate a target text from each source text with a sequence-to-sequence model.

    Example:

    ```python
    >>> translator = pipeline("vaswani-text2text", model="path/to/folder")
    >>> translator("In the beginning God created the heaven and the earth.", num_beams=4, length_penalty=0.6)
    [{'generated_text': 'En el principio creó Dios los cielos y la tierra.'}]
    ```

    Call arguments: `truncation` (cut sources longer than the model takes, default True), `return_tensors` (return
    `generated_token_ids` instead of text), `clean_up_tokenization_spaces` (default: the tokenizer's own setting),
    and any `generate()` argument (`max_new_tokens`, `num_beams`,
    `length_penalty`, `do_sample`, `num_return_sequences`, ...).
    """

    _load_image_processor = False
    _default_generation_config = GenerationConfig(max_new_tokens=256)

    def _sanitize_parameters(self, truncation=None, return_tensors=None, clean_up_tokenization_spaces=None, **kwargs):
        preprocess_params = {"truncation": True if truncation is None else truncation}
        return preprocess_params, kwargs, self._decoding_settings(return_tensors, clean_up_tokenization_spaces)

    def preprocess(self, inputs, truncation=True):
        if not isinstance(inputs, str) or not inputs.strip():
            raise ValueError(f"vaswani-text2text takes non-empty strings, got {inputs!r}.")
        return self.tokenizer(inputs, return_tensors="pt", truncation=truncation)


class VaswaniImageToTextPipeline(_GeneratingPipeline):
    """
    Caption each image with an image encoder-decoder (a `VaswaniForConditionalGeneration` whose config has
    `image_size`): the image processor makes `pixel_values`, `generate()` the ids, the tokenizer the words.

    Example:

    ```python
    >>> captioner = pipeline("vaswani-image-to-text", model="path/to/folder")
    >>> captioner("strip.png", num_beams=4)
    [{'generated_text': 'three one four'}]
    ```

    Inputs: a PIL image, a path or URL, or a list of them. Call arguments: `return_tensors` (return
    `generated_token_ids` instead of text), `clean_up_tokenization_spaces`, and any `generate()` argument
    (`max_new_tokens`, `num_beams`, `do_sample`, `num_return_sequences`, ...).
    """

    _load_image_processor = True
    _default_generation_config = GenerationConfig(max_new_tokens=64)

    def _sanitize_parameters(self, return_tensors=None, clean_up_tokenization_spaces=None, timeout=None, **kwargs):
        preprocess_params = {"timeout": timeout} if timeout is not None else {}
        return preprocess_params, kwargs, self._decoding_settings(return_tensors, clean_up_tokenization_spaces)

    def preprocess(self, image, timeout=None):
        if getattr(self.model.config, "image_size", None) is None:
            raise ValueError(
                "vaswani-image-to-text needs a model whose encoder reads images (a config with `image_size`); "
                "this one reads tokens: use vaswani-text2text."
            )
        if isinstance(image, str) or is_pil_image(image):  # arrays go to the processor as they are (as ViT's pipeline)
            image = load_image(image, timeout=timeout)
        pixel_values = self.image_processor(images=image, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixel_values.to(self.dtype or torch.float32)}


class VaswaniQuestionAnsweringPipeline(Pipeline):
    """
    Extractive question answering with a `VaswaniForQuestionAnswering` model and a fast tokenizer.

    Example:

    ```python
    >>> qa = pipeline("vaswani-question-answering", model="path/to/folder")
    >>> qa(question="Who created the heaven?", context="In the beginning God created the heaven and the earth.")
    {'answer': 'God', 'score': 0.93, 'start': 17, 'end': 20}
    ```

    Inputs: `question=` and `context=` (strings or lists of equal length), or a dict (or list of dicts) with those
    keys. Call arguments: `top_k` (answers per question, default 1), `doc_stride` (overlap of the windows of a long
    context, default 128 tokens), `max_seq_len` (window length, default the model's), `max_answer_len` (default 30
    tokens).
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def _sanitize_parameters(self, top_k=None, doc_stride=None, max_seq_len=None, max_answer_len=None, **kwargs):
        preprocess_params, postprocess_params = {}, {}
        if doc_stride is not None:
            preprocess_params["doc_stride"] = doc_stride
        if max_seq_len is not None:
            preprocess_params["max_seq_len"] = max_seq_len
        if top_k is not None:
            if top_k < 1:
                raise ValueError(f"top_k must be at least 1, got {top_k}.")
            postprocess_params["top_k"] = top_k
        if max_answer_len is not None:
            if max_answer_len < 1:
                raise ValueError(f"max_answer_len must be at least 1, got {max_answer_len}.")
            postprocess_params["max_answer_len"] = max_answer_len
        return preprocess_params, {}, postprocess_params

    def __call__(self, *args, question=None, context=None, **kwargs):
        if args:
            inputs = args[0]
        elif isinstance(question, list) or isinstance(context, list):
            if not isinstance(question, list) or not isinstance(context, list) or len(question) != len(context):
                raise ValueError("Pass `question` and `context` as strings, or as lists of the same length.")
            inputs = [{"question": q, "context": c} for q, c in zip(question, context)]
        else:
            inputs = {"question": question, "context": context}
        return super().__call__(inputs, **kwargs)

    def _max_seq_len(self) -> int:
        limits = [self.tokenizer.model_max_length, 384]
        if self.model.config.position_embedding_type == "learned":
            limits.append(self.model.config.max_position_embeddings)
        return min(limit for limit in limits if limit and limit > 0)

    def preprocess(self, example, doc_stride=128, max_seq_len=None):
        if not isinstance(example, dict):
            raise ValueError("Each input needs a question and a context: {'question': ..., 'context': ...}.")
        question, context = example.get("question"), example.get("context")
        for name, value in (("question", question), ("context", context)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"The {name} must be a non-empty string, got {value!r}.")
        max_seq_len = max_seq_len or self._max_seq_len()
        question_length = len(self.tokenizer(question, add_special_tokens=True)["input_ids"])
        room = max_seq_len - question_length - 1  # context tokens per window
        if room < 2:
            raise ValueError(f"The question takes {question_length} tokens; it leaves no room for the context.")
        encoded = self.tokenizer(
            question,
            context,
            truncation="only_second",
            max_length=max_seq_len,
            stride=min(doc_stride, room // 2),  # consecutive windows overlap by this many context tokens
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="longest",
            return_tensors="pt",
        )
        context_mask = torch.tensor(
            [[sid == 1 for sid in encoded.sequence_ids(i)] for i in range(encoded["input_ids"].shape[0])]
        )  # (windows, T): True on context tokens, where an answer may start and end
        model_inputs = {k: encoded[k] for k in self.tokenizer.model_input_names if k in encoded}
        return {
            "model_inputs": model_inputs,
            "offsets": encoded["offset_mapping"],
            "context_mask": context_mask,
            "context": context,
        }

    def _forward(self, inputs):
        output = self.model(**inputs["model_inputs"])
        return {
            "start_logits": output.start_logits,
            "end_logits": output.end_logits,
            "offsets": inputs["offsets"],
            "context_mask": inputs["context_mask"],
            "context": inputs["context"],
        }

    def postprocess(self, outputs, top_k=1, max_answer_len=30):
        mask = outputs["context_mask"]
        blocked = torch.finfo(torch.float32).min
        start = outputs["start_logits"].float().masked_fill(~mask, blocked).softmax(-1)  # (windows, T)
        end = outputs["end_logits"].float().masked_fill(~mask, blocked).softmax(-1)
        length = start.shape[-1]
        i, j = torch.arange(length)[:, None], torch.arange(length)[None, :]
        allowed = (j >= i) & (j - i < max_answer_len)  # an answer ends at or after its start, within max length
        candidates = {}
        for window in range(start.shape[0]):
            scores = start[window][:, None] * end[window][None, :]  # P(start = i) * P(end = j)
            scores = scores.masked_fill(~(allowed & mask[window][:, None] & mask[window][None, :]), 0.0)
            best = scores.flatten().topk(min(top_k, scores.numel()))
            for score, index in zip(best.values.tolist(), best.indices.tolist()):
                first, last = divmod(index, length)
                char_start = int(outputs["offsets"][window][first][0])
                char_end = int(outputs["offsets"][window][last][1])
                span = (char_start, char_end)
                if score > 0 and score > candidates.get(span, -1.0):
                    candidates[span] = score
        ranked = sorted(candidates.items(), key=lambda item: -item[1])[:top_k]
        answers = [
            {"answer": outputs["context"][s:e], "score": score, "start": s, "end": e} for (s, e), score in ranked
        ]
        if not answers:
            answers = [{"answer": "", "score": 0.0, "start": 0, "end": 0}]
        return answers[0] if top_k == 1 else answers
