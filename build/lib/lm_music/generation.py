"""The sampling run behind `sample.py`: a checkpoint in, samples out; neither the dataset nor Lightning is
loaded."""

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from lm_music.checkpoints import load_checkpoint
from lm_music.errors import UserError
from lm_music.export import PRETRAINED, pretrained_listing
from lm_music.io import atomic_path, write_text_atomic
from lm_music.samplers import SAMPLERS, LyricsSampler, PianoRollSampler
from lm_music.threads import ThreadPolicy

log = logging.getLogger(__name__)


def _check_args(cfg: DictConfig) -> None:
    if not cfg.get("ckpt_path") and not cfg.get("pretrained"):
        raise UserError(
            "give the model to sample from: ckpt_path=RUN_DIR/checkpoints/last.ckpt or pretrained=NAME "
            "(pretrained=list shows the shipped ones)"
        )
    if cfg.num_samples < 1:
        raise UserError(f"num_samples must be at least 1, got {cfg.num_samples}")
    if cfg.length < 1:
        raise UserError(f"length must be at least 1, got {cfg.length}")
    if cfg.temperature <= 0:
        raise UserError(f"temperature must be > 0, got {cfg.temperature} (1.0 samples the model as trained)")
    if cfg.get("top_k") is not None and cfg.top_k < 1:
        raise UserError(f"top_k must be at least 1 (or null), got {cfg.top_k}")
    if cfg.get("top_p") is not None and not 0 < cfg.top_p <= 1:
        raise UserError(f"top_p must be in (0, 1] (or null), got {cfg.top_p}")


def sample_lyrics(
    sampler: LyricsSampler, cfg: DictConfig, generator: torch.Generator, out_dir: Path
) -> list[Path]:
    artists = [cfg.artist] * cfg.num_samples if cfg.get("artist") else None
    if artists is None and sampler.conditional:
        artists = [sampler.artists[i % len(sampler.artists)] for i in range(cfg.num_samples)]
        log.info("no artist= given: cycling through the model's artists")
    texts = sampler.sample(
        cfg.num_samples,
        cfg.length,
        temperature=cfg.temperature,
        prime=cfg.get("prime") or "",
        artists=artists,
        top_k=cfg.get("top_k"),
        top_p=cfg.get("top_p"),
        generator=generator,
    )
    blocks = []
    for i, text in enumerate(texts):
        header = f"=== sample {i}" + (f" ({artists[i]})" if artists else "") + " ==="
        blocks.append(f"{header}\n{text}\n")
    output = "\n".join(blocks)
    print(output)
    path = out_dir / "samples.txt"
    write_text_atomic(path, output)
    return [path]


def sample_music(
    sampler: PianoRollSampler, cfg: DictConfig, generator: torch.Generator, out_dir: Path
) -> list[Path]:
    from lm_music import midi  # pretty_midi and matplotlib: only music sampling needs them

    grid = {"frames_per_beat": sampler.frames_per_beat, "fs": sampler.fs}
    prime = None
    if cfg.get("prime_midi"):
        if not Path(cfg.prime_midi).is_file():
            raise UserError(f"prime_midi not found: {cfg.prime_midi}")
        roll, _ = midi.midi_to_roll(midi.load_midi(cfg.prime_midi), **grid)
        if len(roll) == 0:
            raise UserError(f"{cfg.prime_midi} has no notes to continue: give another prime_midi")
        prime = torch.from_numpy(roll[: cfg.prime_frames])
    rolls = sampler.sample(cfg.num_samples, cfg.length, cfg.temperature, prime, generator).cpu().numpy()
    written = []
    for i, roll in enumerate(rolls):
        pm = midi.roll_to_midi(roll, **grid, tempo=cfg.tempo, velocity=cfg.velocity)
        path = out_dir / f"sample_{i:03d}.mid"
        with atomic_path(path) as tmp:
            pm.write(str(tmp))
        midi.save_roll_png(roll, path.with_suffix(".png"), title=f"sample {i}")
        written += [path, path.with_suffix(".png")]
        if cfg.get("audio"):
            audio, backend = midi.render_audio(pm, cfg.sample_rate)
            midi.write_wav(path.with_suffix(".wav"), audio, cfg.sample_rate)
            written.append(path.with_suffix(".wav"))
            if i == 0:
                log.info("audio rendered with %s", backend)
    primed = f" ({len(prime)} of prime_midi, then {cfg.length} drawn)" if prime is not None else ""
    print(f"{len(rolls)} samples of {rolls.shape[1]} frames{primed} in {out_dir}")
    return written


def sample(cfg: DictConfig) -> list[Path]:
    """Draw `num_samples` samples as one batch from the checkpoint (or shipped model); return the files
    written."""
    if not cfg.get("ckpt_path") and cfg.get("pretrained") == "list":
        print(pretrained_listing())
        return []
    _check_args(cfg)
    threads = ThreadPolicy(cfg.get("threads", "auto"))
    checkpoint = load_checkpoint(cfg.get("ckpt_path") or f"{PRETRAINED}{cfg.pretrained}")
    device = torch.device(cfg.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    sampler = SAMPLERS[checkpoint["lm_music_task"]].from_checkpoint(checkpoint, device)
    threads.start()
    generator = torch.Generator(device=device).manual_seed(int(cfg.seed))
    out_dir = Path(cfg.out_dir)
    if sampler.task == "lyrics":
        written = sample_lyrics(sampler, cfg, generator, out_dir)
    else:
        written = sample_music(sampler, cfg, generator, out_dir)
    log.info("wrote %s", ", ".join(str(p) for p in written))
    return written
