"""Reading audio files: decode (soundfile), mix to mono, resample (soxr), with one-line errors.

Every way a file can be unusable becomes an ``AudioError`` naming the file, so a dataset run can count and
skip it and the CLI can print it on one line.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dslite_tiny.errors import AudioError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


STREAM_BLOCK_S = 30.0  # seconds decoded at a time: a long recording never sits in memory whole


def load_audio(path: str | Path, *, sr: int) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at ``sr`` Hz (int16 PCM scaled by 1/32768, like tf.audio.decode_wav)."""
    return np.concatenate(list(stream_audio(path, sr=sr)))


def stream_audio(path: str | Path, *, sr: int, block_s: float = STREAM_BLOCK_S) -> Iterator[np.ndarray]:
    """``load_audio`` in blocks of about ``block_s`` seconds, for bounded memory on long recordings. The
    blocks join to exactly what one read would give: soxr's streaming resampler matches its one-shot result
    bit for bit, and the mono mix is per frame."""
    import soundfile as sf

    path = Path(path)
    check_header(path)
    try:
        with sf.SoundFile(str(path)) as handle:
            resampler = _Resampler(handle.samplerate, sr)
            frames, total = max(1, int(block_s * handle.samplerate)), 0
            while True:
                data = handle.read(frames, dtype="float32", always_2d=True)
                last, total = len(data) < frames, total + len(data)
                if last and total == 0:
                    raise AudioError("contains no samples (zero-length audio)", path=path)
                if not np.isfinite(data).all():
                    raise AudioError("contains NaN or infinite samples", path=path)
                mono = data.mean(axis=1, dtype=np.float64).astype(np.float32) if data.shape[1] > 1 else data[:, 0]
                yield resampler(mono, last=last)
                if last:
                    return
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"corrupt audio data ({_clean(exc)})", path=path) from None


class _Resampler:
    """soxr's band-limited resampler (high quality) fed block by block; a no-op at the same rate."""

    def __init__(self, orig_sr: int, target_sr: int) -> None:
        import soxr

        self._stream = None if orig_sr == target_sr else soxr.ResampleStream(orig_sr, target_sr, 1, dtype="float32",
                                                                            quality="HQ")

    def __call__(self, block: np.ndarray, *, last: bool) -> np.ndarray:
        if self._stream is None:
            return np.ascontiguousarray(block, dtype=np.float32)
        return self._stream.resample_chunk(np.ascontiguousarray(block, dtype=np.float32), last=last)


def check_header(path: Path):
    """What can be known without decoding: the file exists, its header is sound and announces samples
    (an ``AudioError`` otherwise); returns soundfile's info (frames, sample rate). Cheap enough to run on
    every file of a dataset before splitting it."""
    import soundfile as sf

    if not path.is_file():
        raise AudioError("no such file" if not path.exists() else "not a file", path=path)
    _check_wav_header(path)
    try:
        info = sf.info(str(path))
    except sf.LibsndfileError as exc:
        raise AudioError(_describe_decode_error(exc), path=path) from None
    except RuntimeError as exc:  # older soundfile raises RuntimeError
        raise AudioError(f"not a readable audio file ({exc})", path=path) from None
    if info.frames == 0:
        raise AudioError("contains no samples (zero-length audio)", path=path)
    return info


def is_audio_file(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def audio_files(folder: Path) -> list[Path]:
    """Every audio file under ``folder``, at any depth, in path order (a folder named like one is not)."""
    return sorted(path for path in folder.rglob("*") if path.is_file() and is_audio_file(path))


# WAVE format tags libsndfile decodes (PCM, IEEE float, A-law, mu-law, MS/IMA ADPCM, GSM 6.10, extensible).
_WAV_FORMATS = {0x0001: "PCM", 0x0003: "IEEE float", 0x0006: "A-law", 0x0007: "mu-law", 0x0002: "MS ADPCM",
                0x0011: "IMA ADPCM", 0x0031: "GSM 6.10", 0xFFFE: "extensible"}


def _check_wav_header(path: Path) -> None:
    """Catch what libsndfile reports vaguely or not at all: foreign WAVE codecs and truncated data.

    libsndfile calls an MP3-in-WAV file a "malformed fmt chunk" and silently shortens a truncated file.
    """
    with path.open("rb") as handle:
        header = handle.read(12)
        if len(header) < 12 or header[:4] not in (b"RIFF", b"RIFX") or header[8:12] != b"WAVE":
            return  # not a RIFF/WAVE file: libsndfile decides
        size = path.stat().st_size
        while True:
            chunk = handle.read(8)
            if len(chunk) < 8:
                return
            chunk_id, chunk_size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if chunk_id == b"fmt ":
                if handle.tell() + chunk_size > size or chunk_size < 2:
                    raise AudioError("truncated: the WAVE header ends inside its fmt chunk", path=path)
                tag = int.from_bytes(handle.read(2), "little")
                if tag not in _WAV_FORMATS:
                    raise AudioError(f"unsupported sample format: WAVE format tag 0x{tag:04X}; supported: "
                                     f"{', '.join(_WAV_FORMATS.values())}", path=path)
                handle.seek(chunk_size - 2 + (chunk_size & 1), 1)
            elif chunk_id == b"data":
                available = size - handle.tell()
                if 0 < available < chunk_size and chunk_size != 0xFFFFFFFF:  # 0xFFFFFFFF: streamed/RF64
                    raise AudioError(f"truncated: the data chunk announces {chunk_size} bytes but the file "
                                     f"holds {available}", path=path)
                return
            else:
                handle.seek(chunk_size + (chunk_size & 1), 1)


def _describe_decode_error(exc: Exception) -> str:
    text = _clean(exc)
    lowered = text.lower()
    if "unsupported" in lowered or "not supported" in lowered or "codec" in lowered:
        return f"unsupported sample format ({text})"
    if "format not recognised" in lowered or "unknown format" in lowered or "not recognised" in lowered:
        return f"not an audio file, or its format is not recognised ({text})"
    return f"corrupt or unreadable audio ({text})"


def _clean(exc: Exception) -> str:
    """libsndfile messages carry the file name and a prefix; keep only the cause."""
    text = " ".join(str(exc).split())
    return text.split(": ", 1)[1] if text.startswith("Error opening") and ": " in text else text


def audio_duration(path: str | Path) -> float | None:
    """Seconds of audio from the header only (fast); None for a file soundfile cannot open."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError):
        return None
    return info.frames / info.samplerate if info.samplerate else None
