"""Self-supervised refit objectives: masked language modelling and unsupervised SimCSE.

Each objective is a ``torch.nn.Module`` holding the encoder's transformer (``body``) and whatever head
the objective needs, and returns ``(loss, tokens)`` for one batch. Only the body is kept after the refit.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Optional

import torch
from torch import nn
from torch.nn import functional as F

from adaptlab.errors import ConfigError

IGNORE_INDEX = -100


def mask_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    special_ids: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    probability: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: pick ``probability`` of the real tokens; of those 80% -> [MASK], 10% random, 10% kept.

    Special tokens and padding are never picked. All draws come from ``generator`` so masking is
    reproducible and resumable (its state goes into the checkpoint). At least one token per batch is
    picked, otherwise the loss of a batch of very short texts would be 0/0. Every tensor is made on
    ``input_ids``' device (``generator`` must be on it too): on a GPU the masking runs there, not on the host.

    Returns ``(masked_input_ids, labels)`` with ``labels == -100`` where no prediction is asked.
    """
    dev = input_ids.device
    eligible = attention_mask.bool() & ~torch.isin(input_ids, special_ids)
    probs = torch.full(input_ids.shape, probability, device=dev)
    picked = torch.bernoulli(probs, generator=generator).bool() & eligible
    if not picked.any() and eligible.any():
        where = eligible.nonzero()
        j = int(torch.randint(len(where), (1,), generator=generator, device=dev))
        picked[where[j, 0], where[j, 1]] = True
    labels = input_ids.masked_fill(~picked, IGNORE_INDEX)
    out = input_ids.clone()
    to_mask = torch.bernoulli(torch.full(input_ids.shape, 0.8, device=dev), generator=generator).bool() & picked
    out[to_mask] = mask_id
    to_random = (torch.bernoulli(torch.full(input_ids.shape, 0.5, device=dev), generator=generator).bool()
                 & picked & ~to_mask)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, device=dev)
    out[to_random] = random_ids[to_random]
    return out, labels


def _strip_pooler(body: nn.Module) -> Optional[nn.Module]:
    # The pooler is not used by mean/cls/max pooling nor by the MLM head; taking it out saves a matmul
    # per step and keeps its weights out of the optimizer. It is put back unchanged after the refit.
    pooler = getattr(body, "pooler", None)
    if isinstance(pooler, nn.Module):
        body.pooler = None
        return pooler
    return None


class MLMObjective(nn.Module):
    """Masked-LM refit of an encoder saved without an MLM head (e.g. all-MiniLM-L6-v2).

    The head comes from ``AutoModelForMaskedLM.from_config`` (transform initialised with the model's
    own init, seeded by the caller) and its decoder is tied to the encoder's input embeddings, as in
    BERT pretraining. Logits are computed for the masked positions only: the full
    ``batch x length x vocab`` matrix is the most expensive tensor of a naive MLM step.
    """

    def __init__(self, encoder: Any, *, mlm_probability: float) -> None:
        super().__init__()
        from transformers import AutoModelForMaskedLM

        body = copy.deepcopy(encoder.model)
        try:
            mlm = AutoModelForMaskedLM.from_config(body.config)
        except (ValueError, KeyError) as exc:
            raise ConfigError(
                f"encoder {encoder.name!r} ({type(body).__name__}) has no masked-LM variant in transformers: "
                f"{exc}. Use objective='simcse', which needs no LM head."
            ) from exc
        head = getattr(mlm, "cls", None) or getattr(mlm, "lm_head", None)
        out_emb = mlm.get_output_embeddings()
        if head is None or out_emb is None:
            raise ConfigError(
                f"encoder {encoder.name!r}: cannot find the masked-LM head of {type(mlm).__name__}. "
                "Use objective='simcse'."
            )
        out_emb.weight = body.get_input_embeddings().weight  # tie decoder to input embeddings
        self._pooler = [_strip_pooler(body)]  # a list: kept out of parameters() and the checkpoint
        self.body = body
        self.head = head
        tok = encoder.tokenizer
        if tok.mask_token_id is None:
            raise ConfigError(f"encoder {encoder.name!r}: its tokenizer has no [MASK] token; use objective='simcse'.")
        self.mask_id = int(tok.mask_token_id)
        self.register_buffer("special_ids", torch.tensor(sorted(set(tok.all_special_ids)), dtype=torch.long),
                             persistent=False)
        self.vocab_size = int(min(len(tok), body.get_input_embeddings().weight.shape[0]))
        self.mlm_probability = float(mlm_probability)
        del mlm

    @property
    def decoder_is_tied(self) -> bool:
        dec = self.head.predictions.decoder if hasattr(self.head, "predictions") else getattr(self.head, "decoder", None)
        return dec is not None and dec.weight is self.body.get_input_embeddings().weight

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, generator: torch.Generator
                ) -> tuple[torch.Tensor, int]:
        n_tokens = int(attention_mask.sum())  # counted on the host batch: no wait for the device
        dev = generator.device  # the masking runs where the generator lives: the model's device in `train`
        input_ids, attention_mask = input_ids.to(dev, non_blocking=True), attention_mask.to(dev, non_blocking=True)
        masked, labels = mask_tokens(
            input_ids, attention_mask, special_ids=self.special_ids.to(dev), mask_id=self.mask_id,
            vocab_size=self.vocab_size, probability=self.mlm_probability, generator=generator,
        )
        body_dev = next(self.body.parameters()).device
        masked, labels, attention_mask = masked.to(body_dev), labels.to(body_dev), attention_mask.to(body_dev)
        hidden = self.body(input_ids=masked, attention_mask=attention_mask)[0]
        sel = labels != IGNORE_INDEX
        logits = self.head(hidden[sel])
        return F.cross_entropy(logits.float(), labels[sel]), n_tokens

    def release_body(self) -> nn.Module:
        """The refit transformer with its pooler restored, ready to wrap in an `Encoder`."""
        if self._pooler[0] is not None:
            self.body.pooler = self._pooler[0]
        return self.body


class SimCSEObjective(nn.Module):
    """Unsupervised SimCSE: each text is encoded twice with dropout on; the two views are positives and
    the other texts of the batch are negatives (InfoNCE over cosine similarities / temperature)."""

    def __init__(self, encoder: Any, *, temperature: float) -> None:
        super().__init__()
        body = copy.deepcopy(encoder.model)
        self._pooler = [_strip_pooler(body)]
        self.body = body
        self.temperature = float(temperature)
        self._pool: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = encoder.pool

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, generator: torch.Generator
                ) -> tuple[torch.Tensor, int]:
        dev = next(self.body.parameters()).device
        ids = torch.cat([input_ids, input_ids]).to(dev)
        mask = torch.cat([attention_mask, attention_mask]).to(dev)
        hidden = self.body(input_ids=ids, attention_mask=mask)[0]
        z = F.normalize(self._pool(hidden, mask), dim=-1)
        n = input_ids.shape[0]
        sim = z[:n] @ z[n:].T / self.temperature
        return F.cross_entropy(sim, torch.arange(n, device=dev)), int(attention_mask.sum())  # the host batch

    def release_body(self) -> nn.Module:
        if self._pooler[0] is not None:
            self.body.pooler = self._pooler[0]
        return self.body


def build_objective(name: str, encoder: Any, cfg: Any) -> nn.Module:
    if name == "mlm":
        return MLMObjective(encoder, mlm_probability=cfg.mlm_probability)
    if name == "simcse":
        return SimCSEObjective(encoder, temperature=cfg.temperature)
    raise ConfigError.invalid("refit.objective", name, "'mlm' or 'simcse'")
