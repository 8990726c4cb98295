"""Task metrics, computed offline with the local `evaluate` modules shipped in `vaswani.metrics`."""

import math

import numpy as np
import torch

from ..metrics import load_metric
from .data import require_columns
from .tasks import answer_of, generate_captions, generate_texts


def language_model_metrics(eval_loss: float) -> dict:
    """Cross-entropy (nats per predicted token) and perplexity."""
    return {"loss": round(eval_loss, 4), "perplexity": round(math.exp(min(eval_loss, 50)), 2)}


def classification_metrics(predictions, references, num_labels: int) -> dict:
    """Accuracy and F1 (binary for two classes, macro-averaged otherwise), ignoring -100 references."""
    predictions, references = np.asarray(predictions).reshape(-1), np.asarray(references).reshape(-1)
    keep = references != -100
    predictions, references = predictions[keep].tolist(), references[keep].tolist()
    accuracy = load_metric("accuracy").compute(predictions=predictions, references=references)["accuracy"]
    average = "binary" if num_labels == 2 else "macro"
    f1 = load_metric("f1").compute(predictions=predictions, references=references, average=average)["f1"]
    return {"accuracy": round(accuracy, 4), "f1": round(f1, 4)}


def predict_logits(trainer, dataset) -> tuple[np.ndarray, np.ndarray]:
    """The head's logits over `dataset` (the first output when the model returns several) and the labels."""
    output = trainer.predict(dataset)
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    return logits, output.label_ids


def translation_metrics(predictions: list[str], references: list[str]) -> dict:
    """Corpus BLEU and chrF (sacrebleu) of `predictions` against one reference each."""
    refs = [[r] for r in references]
    bleu = load_metric("sacrebleu").compute(predictions=predictions, references=refs)["score"]
    chrf = load_metric("chrf").compute(predictions=predictions, references=refs)["score"]
    return {"bleu": round(bleu, 2), "chrf": round(chrf, 2)}


def evaluate_translation(model, tokenizer, table, source_column, target_column, max_length, limit=None, **generate):
    """Translate the table's sources (beam search as `generate` says) and score them against the targets."""
    require_columns(table, [source_column, target_column], "the evaluation data")
    if limit:
        table = table.select(range(min(limit, len(table))))
    predictions = generate_texts(model, tokenizer, table[source_column], max_length, **generate)
    metrics = translation_metrics(predictions, table[target_column])
    examples = list(zip(table[source_column][:3], predictions[:3], table[target_column][:3]))
    return metrics, examples


@torch.no_grad()
def evaluate_question_answering(
    model, tokenizer, table, question_column, context_column, answer_column, start_column, max_length, doc_stride
) -> dict:
    """Exact match and F1 (SQuAD) of the vaswani-question-answering pipeline's answers."""
    from ..pipelines import VaswaniQuestionAnsweringPipeline

    require_columns(table, [question_column, context_column, answer_column, start_column], "the evaluation data")
    reader = VaswaniQuestionAnsweringPipeline(model=model.eval(), tokenizer=tokenizer)
    predictions, references = [], []
    for row in table:
        answer = reader(question=row[question_column], context=row[context_column], doc_stride=doc_stride,
                        max_seq_len=max_length)
        predictions.append(answer["answer"])
        gold = row[answer_column]
        references.append(list(gold["text"]) if isinstance(gold, dict) else [answer_of(row, answer_column, start_column)[0]])
    scores = load_metric("squad").compute(predictions=predictions, references=references)
    return {"exact_match": round(scores["exact_match"], 2), "f1": round(scores["f1"], 2)}


def caption_metrics(predictions: list[str], references: list[str]) -> dict:
    """
    Exact match: the share of captions equal to their reference, word for word, case aside; word accuracy: the
    words in their reference's place, over the longer caption of each pair (a missing or extra word counts wrong).
    """
    right = total = exact = 0
    for prediction, reference in zip(predictions, references):
        said, meant = prediction.lower().split(), reference.lower().split()
        exact += said == meant
        right += sum(a == b for a, b in zip(said, meant))
        total += max(len(said), len(meant))
    count = max(len(references), 1)
    return {"exact_match": round(exact / count, 4), "word_accuracy": round(right / max(total, 1), 4)}


def evaluate_captioning(model, tokenizer, processor, table, image_column, caption_column, batch_size=32, **generate):
    """Caption the table's images (`generate` as given: greedy, beam or sampling) and score them against its
    captions; a few (image size, prediction, reference) examples beside."""
    require_columns(table, [image_column, caption_column], "the evaluation data")
    images = list(table[image_column])
    predictions = generate_captions(model, tokenizer, processor, images, batch_size, **generate)
    references = [str(caption) for caption in table[caption_column]]
    examples = [(f"image {i} ({images[i].width} x {images[i].height})", predictions[i], references[i])
                for i in range(min(3, len(images)))]
    return caption_metrics(predictions, references), examples
