"""Reading audio files: decode (soundfile), mix to mono, resample (soxr), with one-line errors.

Every way a file can be unusable becomes an ``AudioError`` naming the file, so a dataset run can count and
skip it and the CLI can print it on one line.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dslite_tiny.errors import AudioError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


def load_audio(path: str | Path, *, sr: int) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at ``sr`` Hz (int16 PCM scaled by 1/32768, like tf.audio.decode_wav)."""
    data, file_sr = read_audio(path)
    mono = data.mean(axis=1, dtype=np.float64).astype(np.float32) if data.shape[1] > 1 else data[:, 0]
    return resample(mono, orig_sr=file_sr, target_sr=sr)


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """All channels as float32 (frames, channels) and the file's sample rate, checked for use."""
    import soundfile as sf

    path = Path(path)
    check_header(path)
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"corrupt audio data ({_clean(exc)})", path=path) from None
    if data.shape[0] == 0:
        raise AudioError("contains no samples (zero-length audio)", path=path)
    if not np.isfinite(data).all():
        raise AudioError("contains NaN or infinite samples", path=path)
    return data, int(file_sr)


def check_header(path: Path) -> None:
    """What can be known without decoding: the file exists, its header is sound and announces samples
    (an ``AudioError`` otherwise). Cheap enough to run on every file of a dataset before splitting it."""
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


def resample(y: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling with soxr (high quality); a no-op at the same rate."""
    if orig_sr == target_sr:
        return np.ascontiguousarray(y, dtype=np.float32)
    import soxr

    return soxr.resample(y.astype(np.float32), orig_sr, target_sr, quality="HQ").astype(np.float32)


def is_audio_file(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


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
