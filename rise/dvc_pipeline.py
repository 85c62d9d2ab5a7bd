"""dvc.yaml files, generated from params.yaml so that DVC runs the same jobs as Snakemake.

DVC cannot compute: the runs (variant x seed), checkpoints and datasets the tables and sweeps need,
each variant's policy and training set, and which tables read which metrics; they are written out
here as `foreach` items and explicit stages, one file per preset (the presets differ in seeds,
checkpoints and stages):

  dvc.yaml                      the default preset (`preset:` in params.yaml): `dvc repro`
  pipelines/<preset>/dvc.yaml   every other preset: `dvc repro pipelines/paper/dvc.yaml`

`rise dvc-yaml` rewrites them; `rise dvc-yaml --check` says whether they are up to date (a test
runs it). Stages, as Snakemake's rules:

  code_fingerprints (what each `rise` command runs, rise/fingerprints.py; every stage depends on
  its commands' files), pretrain_<model> (presets with `pretrain`: the toy world), build_models, prepare_data@<dataset>, sample_train@<train set>, train@<variant>-seed<k> (trained),
  base_policy@<variant>-seed<k> (zero-shot), predict@<variant>-seed<k>-<checkpoint>-<dataset>,
  evaluate@<same>, <table> (table1 ...), sweep_<variant> (the `sweeps` list), figure_qualitative

Every output is cached, so `dvc push` / `dvc pull` move models, data, checkpoints, predictions,
metrics and curves (the remote is in .dvc/config). Each stage depends on the narrowest settings it
reads (`variants.<name>`, `presets.<preset>.datasets.<name>`, ...), so editing one variant reruns that
variant alone; a training run does not depend on the list of seeds, only on its own. GPU stages
start through `rise launch` (rise/launch.py), as in Snakemake.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from rise.config import COPIES, Settings, load_settings, preset_names, preset_spec, read_params
from rise.plan import all_needs, sweep_needs, table_needs

HEADER = """\
# GENERATED from params.yaml by `rise dvc-yaml` (rise/dvc_pipeline.py): do not edit by hand;
# rerun it after adding a variant, dataset, seed or table (a test checks that this file is up to date).
# Preset `{preset}`. {where}
#   {repro}  # every table, the sweeps and the figure
#   {repro_table}  # one table
#   {repro_one}  # one run, checkpoint and dataset
#   dvc metrics show  # gIoU / cIoU per run, checkpoint and dataset
#   dvc plots show  # reward per term, KL and completion length per step; checkpoint sweeps
"""


def pipeline_file(raw: dict, preset: str) -> Path:
    """Where a preset's dvc.yaml lies: the project root for the default preset."""
    return Path("dvc.yaml") if preset == raw["preset"] else Path("pipelines") / preset / "dvc.yaml"


def copies_file(preset: str, kind: str) -> Path:
    """The pipeline of a preset's table over its draws or judges (`kind`): a file of its own, so that
    `dvc repro` of the preset's pipeline does not start the hours of its copies."""
    return Path("pipelines") / preset / kind / "dvc.yaml"


def copies_pipeline(params_file: str | Path, preset: str, kind: str) -> dict:
    """As Snakemake's draws_table and judges_table: `draws_<table>` for each of the preset's
    `draws.tables` (rise/toy/draws.py), or `judges_<table>` (rise/toy/judges.py); their deps are
    outputs of the copies' own pipelines (pipelines/<preset>-draw<seed>/dvc.yaml, ...-judge<steps>)."""
    from rise.toy.models import copies_inputs

    raw = read_params(params_file)
    s = load_settings(params_file, preset)
    params = _Params(raw, preset)
    RUN = f"runs/{preset}"
    keep = {"cache": False} if preset_spec(raw, preset)[0].get("results_in_git") else None
    stages = {}
    for name in (s.draw_tables if kind == "draws" else [s.judge_table]):
        deps = copies_inputs(s, kind, name)
        table = s.layout.draws_table(name) if kind == "draws" else s.layout.judges_table(name)
        out = str(table.with_suffix(""))
        files = (".csv", ".comparisons.csv", ".md", ".json") if kind == "draws" else (".csv", ".png", ".md", ".json")
        stages[f"{kind}_{name}"] = {
            "cmd": f"rise --preset {preset} --log {RUN}/logs/{kind}/{name}.log {kind}"
                   + (f" --name {name}" if kind == "draws" else ""),
            "params": params(f"presets.{preset}.{kind}"),
            "deps": deps,
            "outs": [({out + x: keep} if keep else out + x) for x in files],
        }
    stages = _with_code_deps(stages, f"rise --preset {preset} --log {RUN}/logs/code/{kind}.log", f"{RUN}/{kind}/code")
    for stage in stages.values():
        stage["wdir"] = "../../.."
    return {"stages": stages}


def _jobs(settings: Settings) -> dict:
    """What the pipeline runs for a preset, as Snakemake's `all_tables all_sweeps <figure>`."""
    needs = all_needs(settings)
    used = list(dict.fromkeys(n.variant for n in needs))
    runs = {f"{v}-seed{seed}": {"variant": v, "seed": seed} for v in used for seed in settings.seeds(v)}
    train_sets = sorted({settings.variants[n].train_set for n in used if settings.variants[n].train})
    datasets = sorted({settings.train_sets[t]["dataset"] for t in train_sets} | {n.dataset for n in needs})
    return {"datasets": datasets, "train_sets": {t: settings.train_sets[t]["dataset"] for t in train_sets},
            "runs": runs, "needs": {n.key: n for n in needs}, "variants": used}


class _Params:
    """Settings keys a stage depends on, each as narrow as the preset allows."""

    def __init__(self, raw: dict, preset: str):
        self.raw, self.preset = raw, preset

    def _node(self, dotted: str):
        node = self.raw
        for part in dotted.split("."):
            if part.startswith("${"):  # a foreach key or item: one of the names taken from the settings
                return {}
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def defines(self, key: str) -> bool:
        return self._node(key) is not None

    def __call__(self, *keys: str) -> list[str]:
        out = []
        for key in keys:
            while self._node(key) is None and "." in key:  # a key the preset lacks: depend on its parent
                key = key.rsplit(".", 1)[0]
            if key not in out:
                out.append(key)
        return out

    def except_seeds(self, section: str) -> list[str]:
        """Every key of a settings section but `seeds` (a run depends on its own seed alone)."""
        node = self._node(section)
        if not isinstance(node, dict) or "seeds" not in node:
            return self(section)
        return self(*(f"{section}.{k}" for k in node if k != "seeds"))


def pipeline(params_file: str | Path = "params.yaml", preset: str | None = None) -> dict:
    raw = read_params(params_file)
    s = load_settings(params_file, preset)
    preset = s.preset
    jobs = _jobs(s)
    params = _Params(raw, preset)
    spec = preset_spec(raw, preset)[0]
    # a pretraining draw depends on the keys of the preset it copies; its seed is in its name
    P = f"presets.{s.copy_of or preset}"
    RUN = f"runs/{preset}"
    image = (f"{P}.overrides.image", "image")
    wdir = {} if pipeline_file(raw, preset) == Path("dvc.yaml") else {"wdir": "../.."}

    def rise(stage, name):
        return f"rise --preset {preset} --log {RUN}/logs/{stage}/{name}.log"

    run_dir = "${item.variant}/seed${item.seed}"

    def in_git(path):
        """A metrics or table file: in git for a preset with `results_in_git` (the toy's are
        committed), else in DVC's cache like every other output (`dvc push` / `dvc pull`)."""
        return {path: {"cache": False}} if spec.get("results_in_git") else path

    stages: dict = {}
    if s.pretrain:  # the toy world: the three models are trained by stages, build_models checks them
        from rise.toy.models import pretrained_models

        made = pretrained_models(s)  # a judge pretrains its CLIP and reads the preset's policy and SAM2
        every = pretrained_models(s, every=True)
        model_key = {"clip": f"{P}.models.clip", "sam2": f"{P}.models.sam2", "policy": f"{P}.models.policies"}
        for stage, m in made.items():
            stages[f"pretrain_{stage}"] = {
                "cmd": f"{rise('pretrain', stage)} pretrain --model {stage}",
                # a draw's seed, a judge's CLIP steps: in its name, hence in the command
                "params": params(*([] if s.copy_kind == "draws" else [f"{P}.pretrain.seed"]), f"{P}.pretrain.{stage}",
                                 model_key[stage], *image),
                "outs": [m["model"], m["report"]],
            }
        models = [f"{RUN}/models/models.json", *(m["model"] for m in every.values())]
        stages["build_models"] = {
            "cmd": f"{rise('build_models', preset)} build-models",
            "params": params(f"{P}.models"),
            "deps": [m["model"] for m in every.values()],
            "outs": [models[0]],
        }
    else:
        models = [f"{RUN}/models"]
        stages["build_models"] = {
            "cmd": f"{rise('build_models', preset)} build-models",
            "params": params("seed", f"{P}.models", f"{P}.build_demo_models", f"{P}.warm_up_steps", *image),
            "outs": [f"{RUN}/models"],
        }
    stages.update({
        "prepare_data": {
            "foreach": jobs["datasets"],
            "do": {
                # loaders that read images in place write no image folder: an empty one keeps the out
                "cmd": [f"{rise('prepare_data', '${item}')} prepare-data --dataset ${{item}}",
                        f"mkdir -p {RUN}/data/images/${{item}}"],
                "params": params("seed", f"{P}.datasets.${{item}}"),
                "outs": [f"{RUN}/data/${{item}}.jsonl", f"{RUN}/data/images/${{item}}"],
            },
        },
        "sample_train": {
            "foreach": {t: {"dataset": d} for t, d in jobs["train_sets"].items()},
            "do": {
                "cmd": f"{rise('sample_train', '${key}')} sample-train --train-set ${{key}}",
                "params": params("seed", f"{P}.train_sets.${{key}}"),
                "deps": [f"{RUN}/data/${{item.dataset}}.jsonl", f"{RUN}/data/images/${{item.dataset}}"],
                "outs": [f"{RUN}/train/${{key}}.jsonl"],
            },
        },
    })
    def variant_key(name: str) -> str:
        """Where params.yaml defines a variant: under `variants`, or a preset's own (`presets.<p>.variants`)."""
        return f"{P}.variants.{name}" if name in spec.get("variants", {}) else f"variants.{name}"

    trained = {k: {**r, "variant_key": variant_key(r["variant"]), "policy": s.variants[r["variant"]].policy,
                   "train_set": s.variants[r["variant"]].train_set}
               for k, r in jobs["runs"].items() if s.variants[r["variant"]].train}
    untrained = {k: {**r, "variant_key": variant_key(r["variant"]), "policy": s.variants[r["variant"]].policy}
                 for k, r in jobs["runs"].items() if not s.variants[r["variant"]].train}
    variant = ("variant_defaults", "${item.variant_key}", f"{P}.models.policies.${{item.policy}}")
    run_args = "--variant ${item.variant} --seed ${item.seed}"
    if trained:
        stages["train"] = {
            "foreach": trained,
            "do": {
                "cmd": f"{rise('train', '${key}')} launch train {run_args}",
                "params": params("seed", *variant, *params.except_seeds("train"),
                                 *params.except_seeds(f"{P}.overrides.train"), *image, f"{P}.models.clip",
                                 f"{P}.launch"),
                "deps": [*models, f"{RUN}/train/${{item.train_set}}.jsonl"],
                # resumes from its latest checkpoint; the curves' CSV is drawn by the pipeline's plots
                # (x: step, one line per run), the PNG is the run's own figure
                "outs": [{f"{RUN}/checkpoints/{run_dir}": {"persist": True}}, f"{RUN}/curves/${{key}}.csv"],
                "plots": [f"{RUN}/curves/${{key}}.png"],
            },
        }
    if untrained:
        stages["base_policy"] = {
            "foreach": untrained,
            "do": {
                "cmd": f"{rise('train', '${key}')} train {run_args}",
                "params": params("seed", *variant, "train.seeds", f"{P}.overrides.train.seeds"),
                "deps": models,
                "outs": [f"{RUN}/checkpoints/{run_dir}", f"{RUN}/curves/${{key}}.csv"],  # no steps: not drawn
            },
        }
    scored = f"{run_dir}/${{item.checkpoint}}/${{item.dataset}}"
    items = {k: {"variant": n.variant, "variant_key": variant_key(n.variant), "seed": n.seed,
                 "checkpoint": n.checkpoint, "dataset": n.dataset}
             for k, n in jobs["needs"].items()}
    stages["predict"] = {
        "foreach": items,
        "do": {
            "cmd": f"{rise('predict', '${key}')} launch predict {run_args} --checkpoint ${{item.checkpoint}} "
                   "--eval-set ${item.dataset}",
            "params": params("seed", "predict", f"{P}.overrides.predict", *image, f"{P}.models.sam2",
                             "evaluate.answer", f"{P}.overrides.evaluate",
                             "variant_defaults", "${item.variant_key}", f"{P}.datasets.${{item.dataset}}"),
            "deps": [*models, f"{RUN}/checkpoints/{run_dir}", f"{RUN}/data/${{item.dataset}}.jsonl",
                     f"{RUN}/data/images/${{item.dataset}}"],
            "outs": [f"{RUN}/predictions/{scored}.jsonl", f"{RUN}/predictions/{scored}.env.json"],
        },
    }
    stages["evaluate"] = {
        "foreach": items,
        "do": {
            "cmd": f"{rise('evaluate', '${key}')} evaluate {run_args} --checkpoint ${{item.checkpoint}} "
                   "--eval-set ${item.dataset}",
            "params": params("seed", "evaluate", f"{P}.overrides.evaluate"),
            "deps": [f"{RUN}/predictions/{scored}.jsonl", f"{RUN}/data/${{item.dataset}}.jsonl"],
            # the numbers alone under metrics/ (the folder `dvc metrics show` lists: see `metrics` below),
            # out of DVC's cache: DVC reports a cached output that is missing as a load failure, and
            # most runs of a pipeline are not built yet; after `dvc pull` they are recomputed from the
            # pulled predictions in seconds. Per-sample scores and the numbers' provenance: scores/
            "outs": [{f"{RUN}/metrics/{scored}.json": {"cache": False}}, in_git(f"{RUN}/scores/{scored}.samples.csv"),
                     in_git(f"{RUN}/scores/{scored}.provenance.json"), in_git(f"{RUN}/scores/{scored}.families.json")],
        },
    }

    def metrics_deps(needs, families: bool = False):
        scored = [f"{n.variant}/seed{n.seed}/{n.checkpoint}/{n.dataset}" for n in needs]
        return [f"{RUN}/metrics/{x}.json" for x in scored] + [f"{RUN}/scores/{x}.families.json" for x in scored if families]

    for name in s.tables:
        # a table is defined under `tables`, a preset's `overrides.tables` or both (its own rows, or a
        # table of its own): it depends on each that exists, not on a parent section
        defined = [k for k in (f"tables.{name}", f"{P}.overrides.tables.{name}") if params.defines(k)]
        stages[name] = {
            "cmd": [f"{rise('table', name)} table --name {name}", f"{rise('table', name)} show --write --name {name}"],
            "params": params(*defined, "train.seeds", f"{P}.overrides.train.seeds"),
            "deps": metrics_deps(table_needs(s, name), families=bool(s.tables[name].get("by_family"))),
            "outs": [in_git(f"results/{preset}/{name}.csv"), in_git(f"results/{preset}/{name}.md"),
                     in_git(f"results/{preset}/{name}.html"), in_git(f"results/{preset}/{name}.json")],
        }
    for v in s.sweeps:
        stages[f"sweep_{v}"] = {
            "cmd": f"{rise('sweep', v)} sweep --variant {v}",
            "params": params("sweeps", "train.seeds", f"{P}.overrides.train.seeds", "train.save_steps",
                             f"{P}.overrides.train.save_steps"),
            "deps": metrics_deps(sweep_needs(s, v)) + [f"{RUN}/checkpoints/{v}/seed{k}" for k in s.seeds(v)],
            "outs": [f"results/{preset}/sweeps/{v}.csv"],
            "plots": [f"results/{preset}/sweeps/{v}.png"],
        }
    if s.sweeps:
        stages["figure_sweeps"] = {
            "cmd": f"{rise('figure', 'sweeps')} sweep-figure",
            "params": params("sweeps"),
            "deps": [f"results/{preset}/sweeps/{v}.csv" for v in s.sweeps],
            "plots": [f"results/{preset}/figures/sweeps.png"],
        }
    q = s.figures.get("qualitative")
    if q:
        stages["figure_qualitative"] = {
            "cmd": f"{rise('figure', 'qualitative')} figure",
            "params": params("figures.qualitative"),
            "deps": [f"{RUN}/predictions/{v}/seed{s.seeds(v)[0]}/final/{q['dataset']}.jsonl" for v in q["variants"]],
            "outs": [f"results/{preset}/figures/qualitative.png"],
        }
    if "cpu_kernels" in spec:  # every stage computes on the kernels it pins
        for stage in stages.values():
            body = stage.get("do", stage)
            body["params"] = [*body.get("params", []), f"{P}.cpu_kernels"]
    stages = _with_code_deps(stages, rise("code", "fingerprints"), f"{RUN}/code")
    for stage in stages.values():
        (stage["do"] if "do" in stage else stage).update(wdir)
    # The metrics folder, not each file: `dvc metrics show` then lists the runs that exist, with no
    # load failure for those not run yet (an empty folder is kept in git, its .gitkeep in .dvcignore).
    up = "" if not wdir else "../../"
    # (a pretraining draw's runs are read through the draws table, not listed one by one)
    out = {"stages": stages, **({} if s.copy_of else {"metrics": [f"{up}{RUN}/metrics"]})}
    if not wdir:
        # `dvc plots show` draws every pipeline's plots on one page: the default preset's alone (the
        # `preset` of params.yaml), so that it holds no empty charts of presets not run here
        out["plots"] = _plots(s, up, RUN, list(trained.values()))
    return out


def cli_commands(cmd: str) -> list[str]:
    """The `rise` commands a shell line runs: ['evaluate'], ['launch', 'train'], [] for `mkdir ...`."""
    import shlex

    words = shlex.split(cmd)
    if not words or words[0] != "rise":
        return []
    i = 1
    while i < len(words) and words[i].startswith("--"):  # rise's own options, each with a value
        i += 2
    command = words[i:i + 1]
    return command + words[i + 1:i + 2] if command == ["launch"] else command


def _with_code_deps(stages: dict, rise_call: str, code_dir: str) -> dict:
    """Every stage depends on the code fingerprints of the commands it runs (rise/fingerprints.py),
    which the first stage writes from the `rise/` folder: an edit reruns that stage, and then only
    the stages whose fingerprint changed."""
    used: list[str] = []
    for stage in stages.values():
        body = stage.get("do", stage)
        lines = body["cmd"] if isinstance(body["cmd"], list) else [body["cmd"]]
        commands = list(dict.fromkeys(c for line in lines for c in cli_commands(line)))
        body["deps"] = [f"{code_dir}/{c}.json" for c in commands] + body.get("deps", [])
        used += commands
    used = sorted(set(used))
    code = {"cmd": f"{rise_call} code --write {code_dir} {' '.join(used)}", "deps": ["rise"],
            "outs": [f"{code_dir}/{c}.json" for c in used]}
    return {"code_fingerprints": code, **stages}


def _plots(s: Settings, up: str, run: str, trained: list[dict]) -> list[dict]:
    """`dvc plots show`: one plot per quantity against the step, a line per training run: one colour
    per variant, a dash per seed (the `runs` template, .dvc/plots/runs.json; a run not trained yet
    draws nothing and is not in the legend). Paths are relative to the dvc.yaml (`up`)."""
    def curve(r):
        return f"{up}{run}/curves/{r['variant']}-seed{r['seed']}.csv"

    def by_run(title, field, runs):
        return {title: {"template": "runs", "x": "step", "y": {curve(r): field for r in runs}}}

    plots = [by_run("reward (total)", "reward", trained)]
    for term in ("semantic", "think_format", "seg_format"):
        # as rise/rewards.py:build_rewards: without CoT, R_think is not applied (nor logged)
        having = [r for r in trained if term in s.variants[r["variant"]].rewards
                  and (term != "think_format" or s.variants[r["variant"]].cot)]
        plots.append(by_run(f"reward {term}", f"rewards/{term}/mean", having))
    plots.append(by_run("KL to the reference policy", "kl", trained))
    plots.append(by_run("completion length (tokens)", "completions/mean_length", trained))
    # (the checkpoint sweeps have figures of their own, results/<preset>/sweeps/<variant>.png, a plot
    # of their stage: a page after `make demo`, which builds no sweep, holds no empty chart)
    return plots


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data):  # write repeated foreach items out, no YAML anchors
        return True


def render(params_file: str | Path = "params.yaml", preset: str | None = None) -> str:
    raw = read_params(params_file)
    preset = preset or raw["preset"]
    root = pipeline_file(raw, preset) == Path("dvc.yaml")
    seed = load_settings(params_file, preset).train.seeds[0]
    target = "" if root else f" {pipeline_file(raw, preset)}"
    stage = "" if root else f"{pipeline_file(raw, preset)}:"
    _, copy_of, kind = preset_spec(raw, preset)
    if copy_of:  # built through its kind's pipeline; its commands are those of the preset it copies
        what = "a pretraining draw" if kind == "draws" else "a weaker judge"
        header = (f"{HEADER.splitlines()[0]}\n{HEADER.splitlines()[1]}\n"
                  f"# Preset `{preset}`: {what} of preset `{copy_of}` (presets.{copy_of}.{kind}), its tables\n"
                  f"# alone, which {copies_file(copy_of, kind)} reads; it runs from the project root (wdir).\n")
    else:
        header = HEADER.format(
            preset=preset,
            where="The default preset's pipeline; each other preset's: pipelines/<preset>/dvc.yaml." if root else
            "The default preset's pipeline is ./dvc.yaml; this one runs from the project root (wdir).",
            repro=f"dvc repro{target}", repro_table=f"dvc repro {stage}table4",
            repro_one=f"dvc repro {stage}evaluate@full_3b-seed{seed}-final-reasonseg_test")
    return header + yaml.dump(pipeline(params_file, preset), Dumper=_Dumper, sort_keys=False, width=120)


def render_copies(params_file: str | Path, preset: str, kind: str) -> str:
    what = "pretraining draws" if kind == "draws" else "weaker judges"
    return (f"# GENERATED from params.yaml by `rise dvc-yaml` (rise/dvc_pipeline.py): do not edit by hand.\n"
            f"# Preset `{preset}`'s table over its {what} (presets.{preset}.{kind}, rise/toy/{kind}.py); it reads\n"
            f"# each copy's pipeline (pipelines/{preset}{COPIES[kind]}<n>/dvc.yaml) and runs from the project root.\n"
            f"# Run with `dvc repro {copies_file(preset, kind)}`: every copy, then the table over them.\n"
            + yaml.dump(copies_pipeline(params_file, preset, kind), Dumper=_Dumper, sort_keys=False, width=120))


def write_or_check(params_file: str | Path = "params.yaml", root: str | Path = ".", check: bool = False) -> list[Path]:
    """Writes every preset's dvc.yaml under `root` (or, with `check`, only compares); returns those
    that were out of date."""
    raw = read_params(params_file)
    stale = []
    files = {pipeline_file(raw, p): (lambda p=p: render(params_file, p)) for p in preset_names(raw)}
    for preset in raw["presets"]:
        for kind in COPIES:
            if raw["presets"][preset].get(kind):
                files[copies_file(preset, kind)] = lambda p=preset, k=kind: render_copies(params_file, p, k)
    for path, text_of in files.items():
        target = Path(root) / path
        text = text_of()
        if target.exists() and target.read_text() == text:
            continue
        stale.append(target)
        if not check:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    return stale
