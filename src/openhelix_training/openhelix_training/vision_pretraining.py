"""Teaching the embedded System 2 to see the play table (issue 10, part 1).

No pretrained vision weights ship in a registry package, so the `embedded` preset's CLIP-style tower
starts random. This module pre-trains it on captioned simulator images (``openhelix_ros.sim.captions``
writes them) in two stages, after LLaVA's recipe:

1. ``train_tower``: the vision tower learns the scene's facts directly. One learned query per fact
   ("drawer", "block_red.place", "block_red.left_of.block_blue", ...) attends over the patch features
   System 2 actually uses (``vision_feature_layer``) and classifies its answer. This stands in for the
   CLIP pretraining LLaVA starts from, and it is this project's own, on its own data.
2. ``align_projector``: LLaVA's stage 1. The tower and the language model are frozen, and the
   multi-modal projector learns to turn patch features into the LM's input space. Its loss is next-token
   prediction of the caption ("Describe the play table.") or of short answers to questions about the
   scene, counted on the answers only. The image sits where System 2 puts it, in System 2's own prompt
   (LLaVA-v1's system prompt, "USER: <image>\n..."), so the projector is aligned in the context the
   `<ACT>` latent is read in (LLaVA's own stage 1 uses a bare "<image> caption" template).

``evaluate`` measures the result on held-out scenes: the facts read by the tower's queries, the answers
System 2 gives through the LM (each question scored over its closed answer set by the token that tells
the answers apart, ``answer_tokens``), and the clauses of the captions it writes greedily. ``export_vision_weights`` writes the tower
and projector that the `embedded` preset loads (``System2Config.vision_weights``).

Every stage is resumable: it saves its state every ``checkpoint_every`` steps and continues from there.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CAPTION_QUESTION = "Describe the play table."


@dataclass
class VisionPretrainConfig:
    tower_steps: int = 2000
    tower_batch: int = 64
    tower_lr: float = 1e-3
    align_steps: int = 300
    align_batch: int = 16
    align_lr: float = 1e-3
    caption_fraction: float = 0.5  # the rest of the alignment samples are question-answer turns
    questions_per_sample: int = 4
    weight_decay: float = 0.01
    warmup_steps: int = 50
    checkpoint_every: int = 50
    eval_scenes: int = 100  # held-out scenes asked through the LM (the tower's queries read them all)
    caption_tokens: int = 128  # longest caption generated in evaluation
    seed: int = 0

    def validate(self) -> None:
        for name in ("tower_batch", "align_batch", "checkpoint_every", "questions_per_sample", "caption_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"vision pretraining {name} must be >= 1, got {getattr(self, name)}")
        for name in ("tower_steps", "align_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"vision pretraining {name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_scenes", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"vision pretraining {name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.caption_fraction <= 1.0:
            raise ValueError(f"caption_fraction must be in [0, 1], got {self.caption_fraction}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> VisionPretrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown vision pretraining fields: {sorted(unknown)} (known: {sorted(names)})")
        cfg = cls(**data)
        cfg.validate()
        return cfg


# ------------------------------------------------------------------------------------------------ data

@dataclass
class SceneSet:
    """A directory written by ``openhelix_ros.sim.captions.write_captioned_scenes``: images (N, H, W, 3)
    uint8 and one record per image (caption and facts)."""

    path: Path
    images: np.ndarray
    records: list[dict]

    def __len__(self) -> int:
        return len(self.records)


def load_scene_set(path: str | Path, limit: int | None = None) -> SceneSet:
    path = Path(path)
    manifest = path / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{path} is not a captioned scene set (no manifest.json)")
    shards = sorted(path.glob("images-*.npy"))
    if not shards:
        raise FileNotFoundError(f"{path} has no finished shard (images-*.npy)")
    images, records = [], []
    for shard in shards:
        facts = shard.with_name(shard.name.replace("images-", "facts-").replace(".npy", ".jsonl"))
        rows = [json.loads(line) for line in facts.read_text().splitlines() if line.strip()]
        array = np.load(shard, mmap_mode="r")
        if len(rows) != len(array):
            raise ValueError(f"{shard} holds {len(array)} images but {facts.name} {len(rows)} records")
        images.append(array)
        records += rows
        if limit is not None and len(records) >= limit:
            break
    images = np.concatenate(images)
    if limit is not None:
        images, records = images[:limit], records[:limit]
    return SceneSet(path, images, records)


def fact_vocabulary(records: list[dict]) -> dict[str, tuple[str, ...]]:
    """Every fact key seen, with its closed answer set, in sorted key order."""
    vocab: dict[str, tuple[str, ...]] = {}
    for record in records:
        for fact in record["facts"]:
            choices = tuple(fact["choices"])
            if vocab.setdefault(fact["key"], choices) != choices:
                raise ValueError(f"fact {fact['key']!r} has two answer sets: {vocab[fact['key']]} and {choices}")
    return dict(sorted(vocab.items()))


def pixel_values(system2, images: np.ndarray, batch: int = 256) -> torch.Tensor:
    """System 2's own preprocessing of uint8 images, in chunks (the same call the node makes)."""
    out = [system2.preprocess_images(list(images[i:i + batch])) for i in range(0, len(images), batch)]
    return torch.cat(out)


def patch_features(system2, px: torch.Tensor) -> torch.Tensor:
    """(B, patches, vision hidden): the tower's states at the layer System 2 feeds its projector (the
    class token dropped, as LLaVA's "default" strategy does)."""
    tower = system2.mllm.model.vision_tower
    out = tower(px.to(system2.device, next(tower.parameters()).dtype), output_hidden_states=True)
    return out.hidden_states[system2.config.vision_feature_layer][:, 1:]


class FactQueries(nn.Module):
    """One learned query per fact key attending over patch features, then a classifier over that key's
    answers (answers outside a key's set are masked out)."""

    def __init__(self, width: int, vocabulary: dict[str, tuple[str, ...]]):
        super().__init__()
        self.keys = list(vocabulary)
        self.choices = [vocabulary[k] for k in self.keys]
        most = max(len(c) for c in self.choices)
        self.queries = nn.Parameter(torch.randn(len(self.keys), width) * 0.02)
        self.attention = nn.MultiheadAttention(width, 4, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.classify = nn.Linear(width, most)
        valid = torch.zeros(len(self.keys), most, dtype=torch.bool)
        for i, c in enumerate(self.choices):
            valid[i, : len(c)] = True
        self.register_buffer("valid", valid, persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, P, width) -> logits (B, keys, most answers), invalid answers at -inf."""
        q = self.queries[None].expand(features.shape[0], -1, -1)
        pooled, _ = self.attention(q, features, features, need_weights=False)
        logits = self.classify(self.norm(pooled + q))
        return logits.masked_fill(~self.valid[None], float("-inf"))

    def targets(self, records: list[dict]) -> torch.Tensor:
        """(B, keys) answer index per key, -100 where a scene does not state that fact."""
        index = {k: i for i, k in enumerate(self.keys)}
        out = torch.full((len(records), len(self.keys)), -100, dtype=torch.long)
        for row, record in enumerate(records):
            for fact in record["facts"]:
                if fact["key"] in index:
                    out[row, index[fact["key"]]] = self.choices[index[fact["key"]]].index(fact["answer"])
        return out


def _cosine(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def _save_state(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


# ----------------------------------------------------------------------------------------- stage 1

def train_tower(system2, scenes: SceneSet, cfg: VisionPretrainConfig, work_dir: str | Path,
                progress=None) -> dict:
    """Stage 1: the tower (up to System 2's feature layer) and the fact queries, cross-entropy over every
    stated fact. Returns the training log; resumes from ``work_dir/tower_state.pt``."""
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    vocabulary = fact_vocabulary(scenes.records)
    tower = system2.mllm.model.vision_tower
    heads = FactQueries(tower.config.hidden_size, vocabulary)
    params = [p for p in tower.parameters()] + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.tower_lr, weight_decay=cfg.weight_decay)
    state_path = work / "tower_state.pt"
    step, log = 0, []
    if state_path.is_file():
        state = torch.load(state_path, weights_only=True)
        if state["vocabulary"] != [list(vocabulary), [list(c) for c in vocabulary.values()]]:
            raise ValueError(f"{state_path} was trained on other facts; remove it to start again")
        tower.load_state_dict(state["tower"])
        heads.load_state_dict(state["heads"])
        optimizer.load_state_dict(state["optimizer"])
        step, log = state["step"], state["log"]
    px = pixel_values(system2, scenes.images)
    targets = heads.targets(scenes.records)
    tower.requires_grad_(True)
    tower.train()
    generator = torch.Generator().manual_seed(cfg.seed)
    for _ in range(step):  # the same batches as an uninterrupted run
        torch.randint(len(scenes), (cfg.tower_batch,), generator=generator)
    try:
        while step < cfg.tower_steps:
            rows = torch.randint(len(scenes), (cfg.tower_batch,), generator=generator)
            for group in optimizer.param_groups:
                group["lr"] = cfg.tower_lr * _cosine(step, cfg.tower_steps, cfg.warmup_steps)
            logits = heads(patch_features(system2, px[rows]))
            loss = F.cross_entropy(logits.flatten(0, 1), targets[rows].flatten(), ignore_index=-100)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            step += 1
            log.append({"step": step, "loss": float(loss.detach())})
            if step % cfg.checkpoint_every == 0 or step == cfg.tower_steps:
                _save_state(state_path, {"step": step, "log": log, "tower": tower.state_dict(),
                                         "heads": heads.state_dict(), "optimizer": optimizer.state_dict(),
                                         "vocabulary": [list(vocabulary), [list(c) for c in vocabulary.values()]]})
            if progress is not None:
                progress(1, loss=log[-1]["loss"])
    finally:
        tower.requires_grad_(False)
        tower.eval()
    torch.save(heads.state_dict(), work / "fact_queries.pt")
    (work / "fact_vocabulary.json").write_text(json.dumps(vocabulary, indent=1))
    return {"steps": step, "log": log}


def load_fact_queries(system2, work_dir: str | Path) -> FactQueries:
    work = Path(work_dir)
    vocabulary = {k: tuple(v) for k, v in json.loads((work / "fact_vocabulary.json").read_text()).items()}
    heads = FactQueries(system2.mllm.model.vision_tower.config.hidden_size, vocabulary)
    heads.load_state_dict(torch.load(work / "fact_queries.pt", weights_only=True))
    return heads.eval()


# ----------------------------------------------------------------------------------------- stage 2

class Conversation:
    """Token ids and embeddings of System 2's own prompt around the image, with questions and answers
    in its turns: "{system prompt} USER: <image>\n{question} ASSISTANT: {answer}<eos>", further turns
    " USER: {question} ASSISTANT: {answer}<eos>", and a loss mask on the answers. The constant prefix up to
    the image is System 2's (``prefix`` equals the start of ``System2.tokenize``): it is run once per
    batch, without gradient, and its keys and values are shared by every row (``forward``)."""

    def __init__(self, system2):
        self.system2 = system2
        self.tokenizer = system2.tokenizer
        self.eos = self.tokenizer.eos_token or "</s>"
        self.embed = system2.mllm.model.language_model.get_input_embeddings()
        self.prefix = self._ids(f"{system2.config.system_prompt} USER: ")

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def pieces(self, turns: list[tuple[str, str | None]]) -> list[tuple[list[int], bool]]:
        """(ids, counted) pieces after the image; a turn whose answer is None ends the prompt (evaluation)."""
        out = []
        for i, (question, answer) in enumerate(turns):
            head = ("\n" if i == 0 else " USER: ") + question + " ASSISTANT:"
            out.append((self._ids(head), False))
            if answer is not None:
                out.append((self._ids(" " + answer + self.eos), True))
        return out

    def batch(self, image_features: torch.Tensor, turns: list[list[tuple[str, str | None]]],
              suffixes: list[list[int]] | None = None) -> dict:
        """Right-padded inputs_embeds (B, L, H), attention_mask, labels (-100 where not counted) and the
        index of each row's last real position. ``suffixes``: token ids appended to each row, not counted
        (the answers' shared first tokens when they are scored)."""
        rows_ids, rows_counted = [], []
        n_image = image_features.shape[1]
        for row, row_turns in enumerate(turns):
            ids, counted = [-1] * n_image, [False] * n_image
            pieces = self.pieces(row_turns) + ([(list(suffixes[row]), False)] if suffixes else [])
            for piece, count in pieces:
                ids += piece
                counted += [count] * len(piece)
            rows_ids.append(ids)
            rows_counted.append(counted)
        length = max(len(r) for r in rows_ids)
        batch = len(rows_ids)
        ids = torch.zeros((batch, length), dtype=torch.long)
        labels = torch.full((batch, length), -100, dtype=torch.long)
        mask = torch.zeros((batch, length), dtype=torch.long)
        image_at = torch.zeros((batch, length), dtype=torch.bool)
        for b, (row, counted) in enumerate(zip(rows_ids, rows_counted, strict=True)):
            t = torch.tensor(row)
            ids[b, : len(row)] = t.clamp(min=0)
            image_at[b, : len(row)] = t < 0
            mask[b, : len(row)] = 1
            for i, c in enumerate(counted):
                if c:
                    labels[b, i] = row[i]
        emb = self.embed(ids)
        emb = emb.masked_scatter(image_at[..., None].expand_as(emb),
                                 image_features.to(emb.dtype).reshape(-1, emb.shape[-1]))
        # position i predicts token i + 1
        labels = torch.cat([labels[:, 1:], torch.full((batch, 1), -100, dtype=torch.long)], dim=1)
        return {"input_ids": ids, "inputs_embeds": emb, "attention_mask": mask, "labels": labels,
                "last": mask.sum(1) - 1}

    def forward(self, inputs: dict):
        """The language model over the prefix and then ``inputs`` (a ``batch``): (last hidden states of
        the batch's positions (B, L, H), the keys/values cache of all of it)."""
        lm = self.system2.mllm.model.language_model
        rows = inputs["inputs_embeds"].shape[0]
        with torch.no_grad():
            ids = torch.tensor([self.prefix], device=inputs["inputs_embeds"].device)
            cache = lm(inputs_embeds=self.embed(ids), use_cache=True).past_key_values
        cache.batch_repeat_interleave(rows)
        prefix_mask = torch.ones((rows, len(self.prefix)), dtype=inputs["attention_mask"].dtype,
                                 device=inputs["attention_mask"].device)
        out = lm(inputs_embeds=inputs["inputs_embeds"], past_key_values=cache, use_cache=True,
                 attention_mask=torch.cat([prefix_mask, inputs["attention_mask"]], dim=1))
        return out.last_hidden_state, out.past_key_values


def image_tokens(system2, px: torch.Tensor) -> torch.Tensor:
    """(B, patches, LM hidden): the projected image features System 2 splices into its prompt."""
    tower = system2.mllm.model.vision_tower
    feats = system2.mllm.model.get_image_features(
        pixel_values=px.to(system2.device, next(tower.parameters()).dtype), vision_feature_layer=system2.config.vision_feature_layer,
        vision_feature_select_strategy="default", return_dict=True).pooler_output
    return torch.stack(list(feats)) if isinstance(feats, (list, tuple)) else feats


def _sample_turns(record: dict, rng: np.random.Generator, cfg: VisionPretrainConfig) -> list[tuple[str, str]]:
    if rng.random() < cfg.caption_fraction:
        return [(CAPTION_QUESTION, record["caption"])]
    facts = record["facts"]
    chosen = rng.choice(len(facts), size=min(cfg.questions_per_sample, len(facts)), replace=False)
    return [(facts[i]["question"], facts[i]["answer"]) for i in chosen]


def align_projector(system2, scenes: SceneSet, cfg: VisionPretrainConfig, work_dir: str | Path,
                    progress=None) -> dict:
    """Stage 2 (LLaVA stage 1): only the multi-modal projector trains; next-token loss on the answers.
    Resumes from ``work_dir/align_state.pt``."""
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    projector = system2.mllm.model.multi_modal_projector
    optimizer = torch.optim.AdamW(projector.parameters(), lr=cfg.align_lr, weight_decay=0.0)
    state_path = work / "align_state.pt"
    step, log = 0, []
    if state_path.is_file():
        state = torch.load(state_path, weights_only=True)
        projector.load_state_dict(state["projector"])
        optimizer.load_state_dict(state["optimizer"])
        step, log = state["step"], state["log"]
    conversation = Conversation(system2)
    system2.mllm.requires_grad_(False)
    projector.requires_grad_(True)
    system2.mllm.eval()
    try:
        while step < cfg.align_steps:
            rng = np.random.default_rng([cfg.seed, step])  # per step, so a resumed run draws the same batches
            rows = rng.choice(len(scenes), size=cfg.align_batch, replace=False)
            for group in optimizer.param_groups:
                group["lr"] = cfg.align_lr * _cosine(step, cfg.align_steps, min(cfg.warmup_steps, cfg.align_steps // 5))
            px = system2.preprocess_images([scenes.images[i] for i in rows])
            turns = [_sample_turns(scenes.records[i], rng, cfg) for i in rows]
            inputs = conversation.batch(image_tokens(system2, px), turns)
            hidden, _ = conversation.forward(inputs)
            counted = inputs["labels"] != -100
            logits = system2.mllm.lm_head(hidden[counted])
            loss = F.cross_entropy(logits.float(), inputs["labels"][counted])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(projector.parameters(), 1.0)
            optimizer.step()
            step += 1
            log.append({"step": step, "loss": float(loss.detach()), "tokens": int(counted.sum())})
            if step % cfg.checkpoint_every == 0 or step == cfg.align_steps:
                _save_state(state_path, {"step": step, "log": log, "projector": projector.state_dict(),
                                         "optimizer": optimizer.state_dict()})
            if progress is not None:
                progress(1, loss=log[-1]["loss"])
    finally:
        projector.requires_grad_(False)
    return {"steps": step, "log": log}


# ----------------------------------------------------------------------------------------- evaluation

def answer_tokens(conversation: Conversation, choices: tuple[str, ...]) -> tuple[list[int], list[int]]:
    """How a closed answer set is scored: the tokens every answer starts with (none for the embedded
    tokenizer, the space for a byte-level one) and then each answer's own, distinct, next token."""
    rows = [conversation._ids(" " + c) for c in choices]
    common = 0
    while all(len(r) > common + 1 for r in rows) and len({r[common] for r in rows}) == 1:
        common += 1
    own = [r[common] if len(r) > common else None for r in rows]
    if None in own or len(set(own)) != len(own) or any(r[:common] != rows[0][:common] for r in rows):
        raise ValueError(f"answers {choices} are not told apart by one token after their shared start; they cannot "
                         "be scored by one")
    return rows[0][:common], own


@torch.inference_mode()
def ask(system2, images, questions: list[list[tuple[str, tuple[str, ...]]]], batch: int = 24) -> list[list[str]]:
    """System 2's answer to each (question, choices) about each image: the choice whose own first token
    the LM finds likeliest after "ASSISTANT:" (and the tokens all the choices share)."""
    conversation = Conversation(system2)
    flat = [(i, q, c) for i, qs in enumerate(questions) for q, c in qs]
    scoring = {c: answer_tokens(conversation, c) for c in {c for _, _, c in flat}}
    answers: list[list[str]] = [[] for _ in questions]
    feats = image_tokens(system2, system2.preprocess_images(list(images)))
    for start in range(0, len(flat), batch):
        chunk = flat[start:start + batch]
        inputs = conversation.batch(feats[[i for i, _, _ in chunk]], [[(q, None)] for _, q, _ in chunk],
                                    suffixes=[scoring[c][0] for _, _, c in chunk])
        hidden, _ = conversation.forward(inputs)
        last = hidden[torch.arange(len(chunk)), inputs["last"]]
        logits = system2.mllm.lm_head(last).float()
        for row, (i, _, choices) in enumerate(chunk):
            answers[i].append(choices[int(torch.argmax(logits[row, scoring[choices][1]]))])
    return answers


@torch.inference_mode()
def describe(system2, images, max_tokens: int = 128, batch: int = 16) -> list[str]:
    """Greedy captions of images ("Describe the play table."), batched (every prompt has one length)."""
    conversation = Conversation(system2)
    lm = system2.mllm.model.language_model
    eos = system2.tokenizer.convert_tokens_to_ids(conversation.eos)
    out = []
    for start in range(0, len(images), batch):
        px = system2.preprocess_images(list(images[start:start + batch]))
        feats = image_tokens(system2, px)
        inputs = conversation.batch(feats, [[(CAPTION_QUESTION, None)]] * len(px))
        hidden, cache = conversation.forward(inputs)
        token = system2.mllm.lm_head(hidden[:, -1]).argmax(-1)
        generated = [[] for _ in range(len(px))]
        done = torch.zeros(len(px), dtype=torch.bool)
        for _ in range(max_tokens):
            for b in range(len(px)):
                if not done[b]:
                    if int(token[b]) == eos:
                        done[b] = True
                    else:
                        generated[b].append(int(token[b]))
            if bool(done.all()):
                break
            result = lm(inputs_embeds=conversation.embed(token[:, None]), past_key_values=cache, use_cache=True)
            cache = result.past_key_values
            token = system2.mllm.lm_head(result.last_hidden_state[:, -1]).argmax(-1)
        out += [system2.tokenizer.decode(g, skip_special_tokens=True).strip() for g in generated]
    return out


def clauses(text: str) -> list[str]:
    return [c.strip() for c in text.strip().rstrip(".").split(";") if c.strip()]


@torch.inference_mode()
def evaluate(system2, scenes: SceneSet, cfg: VisionPretrainConfig, fact_queries: FactQueries | None = None,
             train_records: list[dict] | None = None, progress=None) -> dict:
    """Accuracy on held-out scenes, per fact key and overall:

    - ``tower``: the fact queries' answers (every scene), when given;
    - ``vqa``: System 2's answers through the LM (the first ``cfg.eval_scenes`` scenes);
    - ``caption``: clause recall and precision of its greedy captions (the same scenes);
    - ``prior``: the accuracy of always answering a key's most common training answer (what a System 2
      that cannot see could reach at best), when ``train_records`` are given."""
    report: dict = {"scenes": len(scenes), "asked_scenes": min(len(scenes), cfg.eval_scenes)}
    truth = [{f["key"]: f["answer"] for f in r["facts"]} for r in scenes.records]

    def summarise(correct: dict[str, list[bool]]) -> dict:
        every = [c for values in correct.values() for c in values]
        return {"accuracy": float(np.mean(every)) if every else None, "facts": len(every),
                "by_key": {k: round(float(np.mean(v)), 4) for k, v in sorted(correct.items())}}

    if train_records is not None:
        majority: dict[str, Counter] = defaultdict(Counter)
        for r in train_records:
            for f in r["facts"]:
                majority[f["key"]][f["answer"]] += 1
        correct = defaultdict(list)
        for t in truth:
            for k, a in t.items():
                correct[k].append(bool(majority[k]) and majority[k].most_common(1)[0][0] == a)
        report["prior"] = summarise(correct)
    if fact_queries is not None:
        correct = defaultdict(list)
        px = pixel_values(system2, scenes.images)
        index = {k: i for i, k in enumerate(fact_queries.keys)}
        for start in range(0, len(scenes), 128):
            logits = fact_queries(patch_features(system2, px[start:start + 128]))
            predicted = logits.argmax(-1)
            for row, t in enumerate(truth[start:start + 128]):
                for k, a in t.items():
                    if k in index:
                        correct[k].append(fact_queries.choices[index[k]][int(predicted[row, index[k]])] == a)
        report["tower"] = summarise(correct)
    n = report["asked_scenes"]
    if n:
        started = time.monotonic()
        questions = [[(f["question"], tuple(f["choices"])) for f in r["facts"]] for r in scenes.records[:n]]
        answers = ask(system2, scenes.images[:n], questions)
        correct = defaultdict(list)
        for r, given in zip(scenes.records[:n], answers, strict=True):
            for f, a in zip(r["facts"], given, strict=True):
                correct[f["key"]].append(a == f["answer"])
        report["vqa"] = summarise(correct) | {"seconds": round(time.monotonic() - started, 1)}
        if progress is not None:
            progress("vqa")
        started = time.monotonic()
        captions = describe(system2, scenes.images[:n], cfg.caption_tokens)
        recall = defaultdict(list)
        precision = []
        for r, text in zip(scenes.records[:n], captions, strict=True):
            said = set(clauses(text))
            true = {f["clause"]: f["key"] for f in r["facts"] if f["clause"]}
            for clause, key in true.items():
                recall[key].append(clause in said)
            precision += [c in true for c in said]
        report["caption"] = summarise(recall) | {
            "precision": float(np.mean(precision)) if precision else None,
            "examples": [{"truth": r["caption"], "said": c} for r, c in zip(scenes.records[:3], captions[:3],
                                                                             strict=False)],
            "seconds": round(time.monotonic() - started, 1)}
    return report


# ----------------------------------------------------------------------------------------- weights

def export_vision_weights(system2, path: str | Path, provenance: dict) -> Path:
    """Write the tower and projector as safetensors with ``provenance`` (JSON) in its metadata."""
    from safetensors.torch import save_file

    from .modeling_system2 import vision_state

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(vision_state(system2.mllm), str(tmp), metadata={"provenance": json.dumps(provenance, sort_keys=True)})
    tmp.replace(path)
    return path


def load_tower_state(system2, work_dir: str | Path) -> None:
    """Put the tower trained by ``train_tower`` (its saved state) into ``system2``."""
    state = torch.load(Path(work_dir) / "tower_state.pt", weights_only=True)
    system2.mllm.model.vision_tower.load_state_dict(state["tower"])


def load_align_state(system2, work_dir: str | Path) -> None:
    """Put the projector aligned by ``align_projector`` (its saved state) into ``system2``."""
    state = torch.load(Path(work_dir) / "align_state.pt", weights_only=True)
    system2.mllm.model.multi_modal_projector.load_state_dict(state["projector"])


def markdown_report(report: dict) -> str:
    """The held-out accuracies as a table per fact key, with the caption examples."""
    parts = [part for part in ("prior", "tower", "vqa", "caption") if part in report]
    names = {"prior": "prior (cannot see)", "tower": "tower's fact queries", "vqa": "System 2 answers (LM)",
             "caption": "caption clause recall"}
    lines = ["# System 2 vision pretraining on the play table", "",
             f"Held-out scenes: {report['scenes']} (the tower's queries and the prior read all of them; System 2 "
             f"was asked and captioned {report['asked_scenes']}).", ""]
    settings = report.get("settings")
    if settings:
        lines += ["Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()), ""]
    for step, record in report.get("training", {}).items():
        lines.append(f"- {step}: " + ", ".join(f"{k} {v}" for k, v in record.items()))
    lines += ["", "| fact | " + " | ".join(names[p] for p in parts) + " |",
              "|---|" + "---|" * len(parts)]

    def cell(part, key=None):
        value = report[part]["accuracy"] if key is None else report[part]["by_key"].get(key)
        return "" if value is None else f"{100 * value:.1f} %"

    keys = sorted({k for p in parts for k in report[p]["by_key"]})
    lines.append("| **all** | " + " | ".join(f"**{cell(p)}** ({report[p]['facts']})" for p in parts) + " |")
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(cell(p, key) for p in parts) + " |")
    caption = report.get("caption")
    if caption:
        precision = "n/a (no clause said)" if caption["precision"] is None else f"{100 * caption['precision']:.1f} %"
        lines += ["", f"Caption clause precision (clauses said that are true): {precision}.",
                  "", "Examples (held-out):", ""]
        for example in caption["examples"]:
            lines += [f"- truth: {example['truth']}", f"  said: {example['said']}"]
    return "\n".join(lines) + "\n"
