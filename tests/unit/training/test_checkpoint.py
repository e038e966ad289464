"""The checkpoint layout (run directory -> training checkpoint -> model directories) and resuming: an
interrupted run resumed from its checkpoint trains on as if never stopped, from a file that loads with
torch.load(weights_only=True)."""

import json

import pytest
import torch

from openhelix_training import CheckpointError, System1, System2, load_checkpoint
from openhelix_training.checkpoint import (
    RESUME_STATE_NAME,
    SYSTEM1_MODEL_TYPE,
    SYSTEM2_MODEL_TYPE,
    TRAINING_STATE_NAME,
    find_model_directory,
    is_training_checkpoint,
    model_directories,
    resolve_checkpoint,
    step_checkpoints,
    training_runs,
    training_state_file,
)
from openhelix_training.train import Trainer, load_train_config


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return System1.from_config("tiny"), System2.from_config("tiny")


def training_checkpoint(directory, models, step=7):
    system1, system2 = models
    system1.save_pretrained(directory / "system1")
    system2.save_pretrained(directory / "system2")
    (directory / TRAINING_STATE_NAME).write_text(json.dumps({"step": step, "train_config": {"seed": 0}}))
    return directory


def test_a_run_directory_resolves_to_its_newest_checkpoint(tmp_path, models):
    run = tmp_path / "run"
    for step in (3, 7):
        training_checkpoint(run / "checkpoints" / f"step_{step:07d}", models, step)
    (run / "checkpoints" / "latest").write_text("step_0000007\n")
    newest = run / "checkpoints" / "step_0000007"
    assert resolve_checkpoint(run) == newest and resolve_checkpoint(newest) == newest
    assert training_state_file(run) == newest / TRAINING_STATE_NAME
    assert step_checkpoints(run) == [run / "checkpoints" / "step_0000003", newest]
    assert training_runs(tmp_path) == [run] and is_training_checkpoint(newest) and not is_training_checkpoint(run)
    assert model_directories(run) == (newest, {SYSTEM1_MODEL_TYPE: newest / "system1",
                                               SYSTEM2_MODEL_TYPE: newest / "system2"})
    loaded = load_checkpoint(run)
    assert loaded.step == 7 and loaded.path == newest and loaded.train_config == {"seed": 0}
    assert isinstance(loaded.system1, System1) and isinstance(loaded.system2, System2)


def test_a_model_directory_holds_one_model(tmp_path, models):
    models[0].save_pretrained(tmp_path / "s1")
    assert find_model_directory(tmp_path / "s1", SYSTEM1_MODEL_TYPE) == tmp_path / "s1"
    assert find_model_directory(tmp_path / "s1", SYSTEM2_MODEL_TYPE) is None
    loaded = load_checkpoint(tmp_path / "s1")
    assert loaded.system2 is None and loaded.step == 0 and loaded.train_config is None


def test_what_is_no_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        model_directories(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither a model directory .* nor a training checkpoint"):
        model_directories(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="unknown model_type 'bert'"):
        model_directories(tmp_path / "other")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "latest").write_text("step_0000009")
    with pytest.raises(CheckpointError, match="step_0000009 does not exist .named by .*latest"):
        model_directories(tmp_path / "run")
    with pytest.raises(ValueError, match="model_type must be one of"):
        find_model_directory(tmp_path, "system3")


# ------------------------------------------------------------------------------------------------------
# resume


def config(output, data_dir, *extra):
    # 8 windows in batches of 4: two batches an epoch, so the checkpoint at step 3 is in mid-epoch
    return load_train_config(None, [
        f"output_dir={output}", "data.kind=calvin", f"data.path={data_dir}", "training.progress=false",
        "training.tensorboard=false", "training.batch_size=4", "training.stage1_steps=1", "training.stage2_steps=5",
        "training.checkpoint_every=3", "training.aux_loss=true", *extra])


class Interrupted(Exception):
    pass


@pytest.mark.filterwarnings("ignore:stage 1 .policy frozen. with a freshly initialised policy")
def test_a_resumed_run_continues_with_the_losses_of_an_uninterrupted_one(tmp_path, small_calvin_dir, monkeypatch):
    whole = Trainer(config(tmp_path / "whole", small_calvin_dir))
    assert len(whole.dataset) == 8
    uninterrupted = whole.run()

    interrupted = Trainer(config(tmp_path / "cut", small_calvin_dir))
    real_step = Trainer.train_step

    def step_until_four(self, batch, stage):
        if self.step == 4:
            raise Interrupted  # killed while training step 5, after the checkpoint of step 3
        return real_step(self, batch, stage)

    monkeypatch.setattr(Trainer, "train_step", step_until_four)
    with pytest.raises(Interrupted):
        interrupted.run()
    monkeypatch.undo()
    assert [p.name for p in step_checkpoints(tmp_path / "cut")] == ["step_0000003"]

    resumed = Trainer(config(tmp_path / "cut", small_calvin_dir, "training.resume=auto")).run()
    assert [m["step"] for m in resumed["history"]] == [4, 5, 6]
    assert [m["total"] for m in resumed["history"]] == [m["total"] for m in uninterrupted["history"][3:]]
    whole, cut = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "cut")
    for a, b in ((whole.system1, cut.system1), (whole.system2, cut.system2)):
        sa, sb = a.state_dict(), b.state_dict()
        assert [k for k in sa if not torch.equal(sa[k], sb[k])] == []


def plain(value) -> bool:
    """Tensors, numbers, strings, None and containers of them: all that weights_only may hold."""
    if isinstance(value, dict):
        return all(isinstance(k, (str, int)) and plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(plain(v) for v in value)
    return value is None or isinstance(value, (torch.Tensor, bool, int, float, str))


@pytest.mark.filterwarnings("ignore:stage 1 .policy frozen. with a freshly initialised policy")
def test_the_resume_file_loads_with_weights_only(tmp_path, small_calvin_dir):
    Trainer(config(tmp_path / "run", small_calvin_dir, "training.stage2_steps=2")).run()
    state = torch.load(resolve_checkpoint(tmp_path / "run") / RESUME_STATE_NAME, weights_only=True)
    assert set(state) == {"optimizer", "torch_rng", "rng", "epoch_generator", "batches_into_epoch"}
    assert plain(state)


@pytest.mark.filterwarnings("ignore:stage 1 .policy frozen. with a freshly initialised policy")
def test_an_older_resume_file_still_resumes(tmp_path, small_calvin_dir):
    """optimizer.pt of before the stream position: the generator as it was at the checkpoint."""
    trainer = Trainer(config(tmp_path / "run", small_calvin_dir, "training.stage2_steps=2"))
    trainer.run()
    path = resolve_checkpoint(tmp_path / "run") / RESUME_STATE_NAME
    state = torch.load(path, weights_only=True)
    torch.save({"optimizer": state["optimizer"], "generator": trainer.generator.get_state(),
                "torch_rng": state["torch_rng"], "rng": state["rng"]}, path)
    result = Trainer(config(tmp_path / "run", small_calvin_dir, "training.resume=auto")).run()
    assert [m["step"] for m in result["history"]] == [4, 5, 6]
    torch.save({"optimizer": state["optimizer"]}, path)
    with pytest.raises(CheckpointError, match="lacks torch_rng, rng, generator"):
        Trainer(config(tmp_path / "run", small_calvin_dir, f"training.resume={path.parent}")).run()
