"""Frontend speed on one core: per second of audio up to the dB mel spectrogram, and per 3 s chunk end to
end (audio → normalised 224×224×3 image), for the DeepSpectrumLite presets.

Targets (issue 2): ≤ 1 ms per second of audio to the dB mel spectrogram, ≤ 2 ms per 3 s chunk end to end
(the paper's anchor: 7.1 ms per chunk on a 2.3 GHz laptop CPU). Also measured: file decode + resample of
the real FSDD recordings when ``../shared`` is present; and (issue 14) one 4 s chunk on all cores with the
BLAS threads as the library leaves them, idle and beside one busy process per core (target: within 2× of
idle), against the same with numpy's default BLAS threads.

    python reports/benchmarks/bench_frontend.py [--repeats 7] [--batch 64]

Writes ``reports/benchmarks/frontend.json`` and ``frontend.md`` next to this script.
"""
from __future__ import annotations

import os
import sys

_LOAD_CHILD = "--under-load-child"  # the load part runs in a child with the environment a user has
_USER_ENV = dict(os.environ)
if _LOAD_CHILD not in sys.argv:
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core, before numpy loads
        os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import subprocess  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from dslite_tiny import __version__  # noqa: E402
from dslite_tiny.audio.frontend import Frontend  # noqa: E402
from dslite_tiny.audio.io import load_audio  # noqa: E402
from dslite_tiny.config import FrontendConfig, load_config  # noqa: E402

HERE = Path(__file__).resolve().parent
FSDD = HERE.parents[1].parent / "shared" / "datasets" / "fsdd" / "recordings"


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: tables, caches, page faults
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_preset(name: str, *, batch: int, repeats: int) -> dict:
    config = load_config(FrontendConfig, name, ("benchmark", {"chunk_s": 3.0, "chunk_hop_s": 3.0}), stage="frontend")
    frontend = Frontend(config)
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(config.chunk_length * batch)).astype(np.float32)
    chunks = frontend.chunk(audio).data
    mel = frontend.spectrogram(chunks)
    to_mel = median_seconds(lambda: frontend.spectrogram(frontend.chunk(audio).data), repeats)
    to_image = median_seconds(lambda: frontend.model_input(mel), repeats)
    end_to_end = median_seconds(lambda: frontend(audio), repeats)
    single = median_seconds(lambda: frontend(audio[: config.chunk_length]), repeats * 5)
    return {
        "preset": name, "chunk_s": 3.0, "n_fft": config.n_fft, "hop_length": config.hop_length,
        "frames": config.n_frames, "n_mels": config.n_mels, "image": list(config.image_shape),
        "batch_chunks": int(chunks.shape[0]),
        "mel_db_ms_per_audio_second": 1e3 * to_mel / (chunks.shape[0] * 3.0),
        "image_ms_per_chunk": 1e3 * to_image / chunks.shape[0],
        "end_to_end_ms_per_chunk_batched": 1e3 * end_to_end / chunks.shape[0],
        "end_to_end_ms_single_chunk": 1e3 * single,
    }


def bench_loading(repeats: int) -> dict | None:
    files = sorted(FSDD.glob("*.wav"))[:200]
    if not files:
        return None
    seconds = sum(load_audio(f, sr=8000).size for f in files) / 8000
    native = median_seconds(lambda: [load_audio(f, sr=8000) for f in files], repeats)
    resampled = median_seconds(lambda: [load_audio(f, sr=16000) for f in files], repeats)
    return {"files": len(files), "audio_seconds": seconds,
            "decode_ms_per_audio_second": 1e3 * native / seconds,
            "decode_resample_8k_to_16k_ms_per_audio_second": 1e3 * resampled / seconds}


LOADS = {  # one process per core
    "a busy Python loop": "while True: pass",
    "numpy matrix products (BLAS threads)": "import numpy as np\na = np.random.rand(800, 800)\nwhile True: a @ a",
}


def bench_under_load(seconds: float = 5.0) -> dict:
    """One 4 s chunk (audio → model input), median ms, idle and beside one busy process per core (each
    load of ``LOADS``); with the library's one BLAS thread and with numpy's default threads (the limit off)."""
    from dslite_tiny.audio import frontend as module

    frontend = Frontend(load_config(FrontendConfig, "dslite-code", ("benchmark", {"chunk_s": 4.0}), stage="frontend"))
    chunk = (0.1 * np.random.default_rng(0).standard_normal(frontend.config.chunk_length)).astype(np.float32)

    def measure(mode: str) -> float:
        """Median ms over ``seconds`` of back-to-back chunks (scheduling noise needs seconds, not runs)."""
        module.one_blas_thread = modes[mode]
        frontend(chunk)
        times, end = [], time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            frontend(chunk)
            times.append(time.perf_counter() - start)
        return 1e3 * statistics.median(times)

    modes = {"one_blas_thread": module.one_blas_thread, "default_blas_threads": contextlib.nullcontext}
    result = {"cores": os.cpu_count(), "chunk_s": 4.0, "seconds_per_figure": seconds, "loads": list(LOADS)}
    for mode in modes:
        result[mode] = {"idle_ms": round(measure(mode), 3)}
    for name, code in LOADS.items():
        load = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(os.cpu_count() or 1)]
        try:
            time.sleep(1.0)
            for mode in modes:  # both modes under the same load
                busy = measure(mode)
                result[mode][name] = {"busy_ms": round(busy, 3), "ratio": round(busy / result[mode]["idle_ms"], 2)}
        finally:
            for process in load:
                process.kill()
                process.wait()
    module.one_blas_thread = modes["one_blas_thread"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument(_LOAD_CHILD, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.under_load_child:
        print(json.dumps(bench_under_load()))
        return
    child = subprocess.run([sys.executable, __file__, _LOAD_CHILD], capture_output=True, text=True, check=True,
                           env=_USER_ENV)
    under_load = json.loads(child.stdout.strip().splitlines()[-1])
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    results = {
        "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:]),
        "dslite_tiny_version": __version__, "numpy": np.__version__, "python": platform.python_version(),
        "cpu": _cpu_name(), "cores_used": 1, "date": time.strftime("%Y-%m-%d"),
        "targets": {"mel_db_ms_per_audio_second": 1.0, "end_to_end_ms_per_chunk": 2.0, "paper_ms_per_chunk": 7.1},
        "presets": [bench_preset(name, batch=args.batch, repeats=args.repeats) for name in ("dslite-code", "dslite-paper")],
        "loading_fsdd": bench_loading(args.repeats),
        "under_load": under_load,
    }
    (HERE / "frontend.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "frontend.md").write_text(_markdown(results))
    print(_markdown(results))


def _markdown(r: dict) -> str:
    lines = [f"# Frontend benchmark ({r['date']}, {r['cpu']}, 1 core)", "", f"Command: `{r['command']}`", "",
             "| preset | frames × mels | mel dB, ms per s of audio (≤ 1) | image, ms/chunk | audio → input, ms/chunk "
             "batched (≤ 2) | one chunk alone, ms |", "|---|---|---|---|---|---|"]
    for p in r["presets"]:
        lines.append(f"| {p['preset']} (3 s chunk) | {p['frames']} × {p['n_mels']} | "
                     f"{p['mel_db_ms_per_audio_second']:.3f} | {p['image_ms_per_chunk']:.3f} | "
                     f"{p['end_to_end_ms_per_chunk_batched']:.3f} | {p['end_to_end_ms_single_chunk']:.3f} |")
    if r["loading_fsdd"]:
        load = r["loading_fsdd"]
        lines += ["", f"Decoding {load['files']} FSDD files ({load['audio_seconds']:.1f} s of audio): "
                  f"{load['decode_ms_per_audio_second']:.3f} ms per s of audio; with resampling 8 → 16 kHz "
                  f"{load['decode_resample_8k_to_16k_ms_per_audio_second']:.3f} ms per s."]
    load = r["under_load"]
    lines += ["", f"## Under load ({load['cores']} cores, one 4 s chunk, audio → model input, median ms)", "",
              "Beside one busy process per core (target: within 2× of idle).", "",
              "| BLAS threads | idle | " + " | ".join(f"beside {name}" for name in load["loads"]) + " |",
              "|---|---:|" + "---:|" * len(load["loads"])]
    for mode, label in (("one_blas_thread", "one (the frontend's limit, as shipped)"),
                        ("default_blas_threads", "numpy's default (limit off)")):
        cells = [f"{load[mode][name]['busy_ms']:.2f} ({load[mode][name]['ratio']:.1f}×)" for name in load["loads"]]
        lines.append(f"| {label} | {load[mode]['idle_ms']:.2f} | " + " | ".join(cells) + " |")
    lines += ["", "Each numpy load process runs one BLAS thread per core, so that load puts two busy threads on "
              "every core: a single-threaded task's fair share is then a third of a core or less, about 2.5× "
              "its idle time at best. With one BLAS thread the frontend gets that share; with numpy's default "
              "threads its own threads wait for cores held by the load, an order of magnitude slower."]
    lines += ["", "Paper anchor: 7.1 ms per chunk (2.3 GHz laptop CPU, TensorFlow)."]
    return "\n".join(lines) + "\n"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
